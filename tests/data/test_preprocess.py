from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recpilot.config import PreprocessConfig
from recpilot.data.preprocess import clean_events, k_core
from recpilot.data.schema import RepairReport, canonical


def _events(rows: list[tuple[str, int, int, str, float | None]]) -> pl.DataFrame:
    user, item, ts, et, val = zip(*rows, strict=True)
    frame = pl.DataFrame(
        {"user_id": user, "item_id": item, "timestamp": ts, "event_type": et, "value": val},
        schema_overrides={"value": pl.Float64},
    )
    return canonical(frame)


def test_exact_duplicates_are_dropped_and_counted() -> None:
    df = _events([("a", 1, 1, "click", None)] * 3 + [("a", 2, 2, "click", None)])
    report = RepairReport()
    out = clean_events(df, PreprocessConfig(deduplicate="exact"), report)
    assert out.height == 2
    assert report.as_dict() == {"dropped exact duplicate events": 2}


def test_user_item_dedup_keeps_first_in_time() -> None:
    df = _events(
        [("a", 1, 5, "click", None), ("a", 1, 2, "view", None), ("a", 2, 3, "click", None)]
    )
    out = clean_events(df, PreprocessConfig(deduplicate="user_item"))
    assert out.sort("item_id")["timestamp"].to_list() == [2, 3]


def test_rating_threshold_and_event_filter_are_counted() -> None:
    df = _events(
        [
            ("a", 1, 1, "rating", 5.0),
            ("a", 2, 2, "rating", 2.0),
            ("a", 3, 3, "rating", None),
            ("a", 4, 4, "view", 4.0),
        ]
    )
    report = RepairReport()
    out = clean_events(df, PreprocessConfig(event_types=["rating"], min_rating=4), report)
    assert out["item_id"].to_list() == [1]
    counts = report.as_dict()
    assert counts["dropped events with value < 4.0"] == 1
    assert counts["dropped events without a value (rating threshold set)"] == 1
    assert sum(counts.values()) == 3


def test_event_weights_assign_and_zero_weight_drops() -> None:
    df = _events([("a", 1, 1, "view", None), ("a", 2, 2, "purchase", None), ("a", 3, 3, "x", None)])
    out = clean_events(df, PreprocessConfig(event_weights={"view": 0.0, "purchase": 5.0}))
    assert dict(zip(out["item_id"].to_list(), out["weight"].to_list(), strict=True)) == {
        2: 5.0,
        3: 1.0,
    }


def test_negative_weight_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="event_weights"):
        PreprocessConfig(event_weights={"view": -1})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=80),
    st.integers(1, 4),
)
def test_k_core_invariant(pairs: list[tuple[int, int]], k: int) -> None:
    df = pl.DataFrame({"user_id": [p[0] for p in pairs], "item_id": [p[1] for p in pairs]})
    out = k_core(df, k)
    if out.height:
        assert out.group_by("user_id").len()["len"].min() >= k
        assert out.group_by("item_id").len()["len"].min() >= k
    # maximality: the k-core of the result is itself
    assert k_core(out, k).height == out.height


def test_min_user_events() -> None:
    df = _events([("a", 1, 1, "c", None), ("b", 1, 1, "c", None), ("b", 2, 2, "c", None)])
    out = clean_events(df, PreprocessConfig(min_user_events=2))
    assert set(out["user_id"].to_list()) == {"b"}
