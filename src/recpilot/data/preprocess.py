"""Cleaning: event filters, rating threshold, deduplication, weights, k-core, min history."""

from __future__ import annotations

import logging

import polars as pl

from recpilot.config import PreprocessConfig
from recpilot.data.interactions import Interactions
from recpilot.data.schema import EventLog, RepairReport
from recpilot.errors import EmptyDataError

logger = logging.getLogger(__name__)


def clean_events(
    events: pl.DataFrame, config: PreprocessConfig, report: RepairReport | None = None
) -> pl.DataFrame:
    """Apply `PreprocessConfig` to a canonical event frame; returns events with a ``weight``.

    Every row removed is counted in ``report``. The result is sorted by user, then time; ties
    keep the source order.
    """
    report = report if report is not None else RepairReport()
    df = events.with_row_index("_row")
    if config.event_types is not None:
        keep = set(config.event_types)
        before = df.height
        df = df.filter(pl.col("event_type").is_in(list(keep)))
        report.add(f"dropped events of types other than {sorted(keep)}", before - df.height)
    if config.min_rating is not None:
        before = df.height
        missing = df["value"].null_count()
        df = df.filter(pl.col("value").is_not_null() & (pl.col("value") >= config.min_rating))
        report.add("dropped events without a value (rating threshold set)", missing)
        report.add(f"dropped events with value < {config.min_rating}", before - df.height - missing)
    df = df.sort(["user_id", "timestamp", "_row"])
    if config.deduplicate == "exact":
        before = df.height
        df = df.unique(subset=[c for c in events.columns], keep="first", maintain_order=True)
        report.add("dropped exact duplicate events", before - df.height)
    elif config.deduplicate == "user_item":
        before = df.height
        df = df.unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
        report.add("dropped repeated user-item events (kept each user's first)", before - df.height)
    weights = config.event_weights
    df = df.with_columns(
        pl.col("event_type")
        .replace_strict(weights, default=1.0, return_dtype=pl.Float32)
        .alias("weight")
        if weights
        else pl.lit(1.0, dtype=pl.Float32).alias("weight")
    )
    if weights:
        before = df.height
        df = df.filter(pl.col("weight") > 0)
        report.add("dropped events whose type has weight 0", before - df.height)
    if config.k_core > 1:
        df = k_core(df, config.k_core, report)
    if config.min_user_events > 1:
        before = df.height
        df = df.filter(pl.len().over("user_id") >= config.min_user_events)
        report.add(
            f"dropped events of users with < {config.min_user_events} events", before - df.height
        )
    return df.drop("_row")


def k_core(df: pl.DataFrame, k: int, report: RepairReport | None = None) -> pl.DataFrame:
    """Repeat until every user and every item has at least ``k`` events."""
    before = df.height
    rounds = 0
    while True:
        rounds += 1
        n = df.height
        df = df.filter(pl.len().over("item_id") >= k)
        df = df.filter(pl.len().over("user_id") >= k)
        if df.height == n:
            break
    if report is not None:
        report.add(f"dropped events outside the {k}-core ({rounds} rounds)", before - df.height)
    return df


def build_interactions(
    log: EventLog, config: PreprocessConfig
) -> tuple[Interactions, RepairReport]:
    """Clean an `EventLog` and encode it (vocabularies hold the ids that survive cleaning)."""
    report = RepairReport()
    report.extend(log.report)
    events = clean_events(log.events, config, report)
    if events.height == 0:
        raise EmptyDataError(
            "no events left after preprocessing; loosen event_types, min_rating, k_core or "
            "min_user_events",
            path=log.source or None,
        )
    data = Interactions.from_frame(events, item_table=log.items, user_table=log.users)
    logger.info("prepared %s", data)
    return data, report
