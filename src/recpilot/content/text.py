"""Item text from side tables and catalogue metadata: title, genres/categories, tags, description."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

#: Metadata fields read into an item's text, in this order; list values are joined with ", ".
TEXT_FIELDS: tuple[str, ...] = (
    "title",
    "name",
    "text",
    "genres",
    "category",
    "categories",
    "tags",
    "description",
)
#: Tags kept per item (the most frequent come first in the side table).
MAX_TAGS = 20


def _as_text(value: Any, limit: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | pl.Series):
        parts = [str(v).strip() for v in list(value)[:limit] if v is not None and str(v).strip()]
        return ", ".join(dict.fromkeys(parts))
    return str(value).strip()


def item_text(record: Mapping[str, Any]) -> str:
    """One item's text from its metadata, e.g. ``"Toy Story (1995). Genres: Animation, Comedy."``.

    Reads `TEXT_FIELDS` that are present; an item with none of them gets ``""`` (a zero
    vector: no content signal).
    """
    parts: list[str] = []
    for name in TEXT_FIELDS:
        text = _as_text(record.get(name), MAX_TAGS if name == "tags" else None)
        if not text:
            continue
        if name in ("title", "name", "text", "description"):
            parts.append(text.rstrip(".") + ".")
        else:
            parts.append(f"{name.capitalize()}: {text}.")
    return " ".join(parts)


def item_texts(item_table: pl.DataFrame | None, item_ids: Sequence[Any] | pl.Series) -> list[str]:
    """Texts of ``item_ids`` (in that order) from a side table keyed by ``item_id``.

    Items missing from the table (or no table) get ``""``.

    Raises:
        ValueError: the table has no ``item_id`` column.
    """
    ids = list(item_ids)
    if item_table is None:
        return [""] * len(ids)
    if "item_id" not in item_table.columns:
        raise ValueError(
            f"the item side table needs an 'item_id' column, it has {item_table.columns}"
        )
    fields = [c for c in TEXT_FIELDS if c in item_table.columns]
    lookup: dict[Any, str] = {}
    for row in item_table.select(["item_id", *fields]).iter_rows(named=True):
        lookup[row["item_id"]] = item_text(row)
    # ids may come as strings from a vocabulary of a service while the table holds ints
    by_str = {str(k): v for k, v in lookup.items()}
    return [lookup.get(i, by_str.get(str(i), "")) for i in ids]


#: release time of an item whose release (or catalogue addition) time is unknown
NO_TIME = int(np.iinfo(np.int64).max)
#: metadata columns read as an item's release / catalogue addition time, in this order
TIME_FIELDS: tuple[str, ...] = ("added_at", "release_date")
_TITLE_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


def _millis(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):  # ISO 8601 (JSON metadata)
        try:
            return _millis(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def item_release_time(record: Mapping[str, Any]) -> int:
    """An item's release or catalogue addition time from its metadata, in milliseconds since
    the Unix epoch (the event clock of `recpilot.data`): ``added_at`` or ``release_date`` (a
    date, datetime, ISO 8601 string or number of milliseconds), else a year in
    parentheses at the end of the title (``"Heat (1995)"`` → 1 January 1995, UTC); `NO_TIME`
    when none is known."""
    for name in TIME_FIELDS:
        millis = _millis(record.get(name))
        if millis is not None:
            return millis
    match = _TITLE_YEAR.search(str(record.get("title") or ""))
    if match and 1800 <= int(match.group(1)) <= 2200:
        return int(datetime(int(match.group(1)), 1, 1, tzinfo=UTC).timestamp() * 1000)
    return NO_TIME


def item_release_times(
    item_table: pl.DataFrame | None, item_ids: Sequence[Any] | pl.Series
) -> np.ndarray:
    """``(n,)`` int64 release / catalogue addition times of ``item_ids`` (see
    `item_release_time`; `NO_TIME` for items missing from the table or without one)."""
    ids = list(item_ids)
    if item_table is None or "item_id" not in item_table.columns:
        return np.full(len(ids), NO_TIME, dtype=np.int64)
    fields = [c for c in ("title", *TIME_FIELDS) if c in item_table.columns]
    lookup = {
        row["item_id"]: item_release_time(row)
        for row in item_table.select(["item_id", *fields]).iter_rows(named=True)
    }
    by_str = {str(k): v for k, v in lookup.items()}
    return np.array([lookup.get(i, by_str.get(str(i), NO_TIME)) for i in ids], dtype=np.int64)
