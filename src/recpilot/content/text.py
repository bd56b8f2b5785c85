"""Item text from side tables and catalogue metadata: title, genres/categories, tags, description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
