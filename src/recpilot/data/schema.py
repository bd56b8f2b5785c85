"""The one event schema, the `EventLog` readers return, and the repair report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import polars as pl

logger = logging.getLogger(__name__)


class EventType(StrEnum):
    """Built-in event types; any other string is a user-defined type."""

    VIEW = "view"
    CLICK = "click"
    CART = "cart"
    PURCHASE = "purchase"
    RATING = "rating"
    INTERACTION = "interaction"


#: Canonical columns and dtypes of an event frame. ``user_id``/``item_id`` keep the source's
#: dtype (Int64 or String). ``timestamp`` is milliseconds since the Unix epoch, or an ordinal
#: position when the source has no clock (``EventLog.has_timestamps`` is then False).
EVENT_COLUMNS: dict[str, pl.DataType | None] = {
    "user_id": None,
    "item_id": None,
    "timestamp": pl.Int64(),
    "event_type": pl.String(),
    "value": pl.Float64(),
    "session_id": pl.String(),
}
REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp", "event_type")


@dataclass
class RepairReport:
    """Counted, documented repairs made while reading or preprocessing (nothing silent)."""

    entries: list[tuple[str, int]] = field(default_factory=list)

    def add(self, what: str, count: int) -> None:
        """Record ``count`` rows affected by ``what`` (ignored when zero) and log it."""
        if count:
            self.entries.append((what, int(count)))
            logger.info("%s: %d", what, count)

    def extend(self, other: RepairReport) -> None:
        self.entries.extend(other.entries)

    def as_dict(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for what, count in self.entries:
            out[what] = out.get(what, 0) + count
        return out

    def lines(self) -> list[str]:
        return [f"{what}: {count:,}" for what, count in self.entries]


@dataclass
class EventLog:
    """What a reader returns: canonical events plus optional side tables.

    Attributes:
        events: canonical event frame (`EVENT_COLUMNS`), in source order.
        items: item side table keyed by ``item_id`` (title, genres, tags, ...), or None.
        users: user side table keyed by ``user_id``, or None.
        source: where it was read from (for messages).
        has_timestamps: False when ``timestamp`` is only the position in the source.
        report: repairs made while reading.
    """

    events: pl.DataFrame
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    source: str = ""
    has_timestamps: bool = True
    report: RepairReport = field(default_factory=RepairReport)

    def __post_init__(self) -> None:
        validate_events(self.events, self.source)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_events": self.events.height,
            "n_users": self.events["user_id"].n_unique(),
            "n_items": self.events["item_id"].n_unique(),
            "has_timestamps": self.has_timestamps,
            "repairs": self.report.as_dict(),
        }


def validate_events(events: pl.DataFrame, source: str = "") -> None:
    """Check that a frame follows the canonical schema (programming errors, not user input)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"{source or 'event frame'}: missing canonical columns {missing}")
    for name, dtype in EVENT_COLUMNS.items():
        if dtype is not None and name in events.columns and events[name].dtype != dtype:
            raise ValueError(
                f"{source or 'event frame'}: column {name} has dtype {events[name].dtype}, expected {dtype}"
            )
    extra = [c for c in events.columns if c not in EVENT_COLUMNS]
    if extra:
        raise ValueError(f"{source or 'event frame'}: unexpected columns {extra}")


def canonical(
    frame: pl.DataFrame,
    *,
    default_event_type: str = EventType.INTERACTION,
) -> pl.DataFrame:
    """Complete a frame with user_id/item_id/timestamp into the canonical column set and order."""
    exprs = [pl.col("user_id"), pl.col("item_id"), pl.col("timestamp").cast(pl.Int64)]
    exprs.append(
        pl.col("event_type").cast(pl.String)
        if "event_type" in frame.columns
        else pl.lit(str(default_event_type), dtype=pl.String).alias("event_type")
    )
    exprs.append(
        pl.col("value").cast(pl.Float64)
        if "value" in frame.columns
        else pl.lit(None, dtype=pl.Float64).alias("value")
    )
    exprs.append(
        pl.col("session_id").cast(pl.String)
        if "session_id" in frame.columns
        else pl.lit(None, dtype=pl.String).alias("session_id")
    )
    return frame.select(exprs)
