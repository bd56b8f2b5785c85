"""Examples, labels, the time split, leakage and the negative-sampling correction."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recpilot.behaviour.dataset import (
    TEST,
    TRAIN,
    VALIDATION,
    BehaviourDataset,
    build_dataset,
    prior_correction,
    split_codes,
    time_cutoffs,
)
from recpilot.behaviour.features import FeatureEncoder
from recpilot.behaviour.models import LogisticBehaviourModel
from recpilot.config import BehaviourDataConfig
from recpilot.data.schema import EventLog, canonical
from recpilot.data.simulator import SimulatedData
from recpilot.errors import ConfigError, DataError
from tests.conftest import dataset_path


def test_impression_labels_match_the_simulator_truth(
    simulated: SimulatedData, sim_dataset: BehaviourDataset
) -> None:
    ds = sim_dataset
    assert ds.mode == "impressions"
    assert ds.behaviours == ["click", "cart", "purchase"]
    assert len(ds) == simulated.truth.height  # one example per view
    ex = pl.DataFrame(
        {
            "user_id": ds.users.lookup(ds.user),
            "item_id": ds.items.lookup(ds.item),
            "timestamp": ds.timestamp,
            "click": ds.labels[:, 0],
            "purchase": ds.labels[:, 2],
        }
    )
    joined = ex.join(simulated.truth, on=["user_id", "item_id", "timestamp"])
    assert joined.height == len(ds)
    assert (joined["click"] == joined["clicked"].cast(pl.Float32)).all()
    assert (joined["purchase"] == joined["purchased"].cast(pl.Float32)).all()


def test_time_split_orders_the_periods(sim_dataset: BehaviourDataset) -> None:
    ds = sim_dataset
    ts = {s: ds.timestamp[ds.split == s] for s in (TRAIN, VALIDATION, TEST)}
    assert all(len(v) for v in ts.values())
    assert ts[TRAIN].max() < ts[VALIDATION].min() <= ts[VALIDATION].max() < ts[TEST].min()
    assert ts[TRAIN].max() < ds.cutoffs[0] <= ts[VALIDATION].min()


def test_histories_hold_only_earlier_events(sim_dataset: BehaviourDataset) -> None:
    ds = sim_dataset
    ev = ds.events
    rng = np.random.default_rng(0)
    for row in rng.choice(len(ds), 200, replace=False):
        start, end = ev.user_start[ds.user[row]], ds.hist_end[row]
        assert (ev.user[start:end] == ds.user[row]).all()
        assert (ev.timestamp[start:end] < ds.timestamp[row]).all()
        # nothing before the example is missing from its history
        rest = ev.timestamp[end : ev.user_start[ds.user[row] + 1]]
        assert (rest >= ds.timestamp[row]).all()


def test_features_do_not_change_when_the_future_is_removed(
    simulated: SimulatedData, sim_dataset: BehaviourDataset
) -> None:
    """Train-period features computed with and without every later event are identical."""
    full = sim_dataset
    cut = full.cutoffs[0]
    events = simulated.log.events.filter(pl.col("timestamp") < cut)
    past = build_dataset(
        EventLog(events, items=simulated.log.items, users=simulated.log.users),
        cutoffs=full.cutoffs,
    )
    enc = FeatureEncoder(20).fit(full)
    rows_full = full.rows("train")
    rows_past = past.rows("train")
    assert len(rows_full) == len(rows_past)
    a = enc.transform(full, rows_full)
    b = enc.transform(past, rows_past)
    np.testing.assert_array_equal(full.item[rows_full], past.item[rows_past])
    np.testing.assert_allclose(a.numeric, b.numeric, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a.hist_item, b.hist_item)


def test_prior_correction_inverts_negative_sampling() -> None:
    p_true = np.array([0.001, 0.01, 0.2, 0.5, 0.9])
    rate = 0.05
    odds_sampled = p_true / (1 - p_true) / rate  # what a model learns on sampled data
    p_sampled = odds_sampled / (1 + odds_sampled)
    np.testing.assert_allclose(prior_correction(p_sampled, rate), p_true, rtol=1e-9)
    np.testing.assert_array_equal(prior_correction(p_sampled, 1.0), p_sampled)
    with pytest.raises(ValueError, match="sampling rate"):
        prior_correction(p_sampled, 0.0)


def _random_impressions(n_users: int, n_items: int, views: int, rate: float, seed: int) -> EventLog:
    """Views with clicks at a known base rate that does not depend on anything."""
    rng = np.random.default_rng(seed)
    n = n_users * views
    users = np.repeat(np.arange(n_users), views)
    items = rng.integers(0, n_items, n)
    ts = 1_700_000_000_000 + np.tile(np.arange(views), n_users) * 60_000 + rng.integers(0, 1000, n)
    clicked = rng.random(n) < rate
    frame = pl.DataFrame(
        {
            "user_id": np.concatenate([users, users[clicked]]),
            "item_id": np.concatenate([items, items[clicked]]),
            "timestamp": np.concatenate([ts, ts[clicked] + 5_000]),
            "event_type": ["view"] * n + ["click"] * int(clicked.sum()),
        }
    )
    return EventLog(canonical(frame))


def test_negative_sampling_correction_recovers_the_base_rate() -> None:
    base = 0.04
    log = _random_impressions(400, 50, 40, base, seed=1)
    sampled_cfg = BehaviourDataConfig(negative_rate=0.1, seed=2)
    sampled = build_dataset(log, sampled_cfg)
    assert sampled.sampling_rate == {"click": pytest.approx(0.1)}
    train_rate = float(sampled.labels[sampled.split == TRAIN, 0].mean())
    assert train_rate > 0.2  # the sampled data is far from the base rate
    model = LogisticBehaviourModel(calibration="none").fit(sampled)
    full = build_dataset(log)  # every view: the population
    p = model.predict_dataset(full, full.rows("test"))["click"]
    assert abs(float(p.mean()) - base) < 0.01
    assert abs(float(full.labels[full.split == TEST, 0].mean()) - base) < 0.01


def test_sampled_negatives_record_their_rate() -> None:
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(30), 10),
            "item_id": np.random.default_rng(0).integers(0, 41, 300),
            "timestamp": np.arange(300) * 1000,
            "event_type": ["purchase"] * 300,
        }
    )
    items = pl.DataFrame({"item_id": np.arange(41)})
    ds = build_dataset(
        EventLog(canonical(frame), items=items), BehaviourDataConfig(negatives_per_positive=4)
    )
    assert ds.mode == "sampled"
    assert ds.sampling_rate == {"purchase": pytest.approx(4 / 40)}
    assert len(ds) == 300 * 5
    assert ds.labels.mean() == pytest.approx(0.2)
    # a negative is never the positive item of the same event
    pos = ds.labels[:, 0] == 1
    key_pos = set(zip(ds.user[pos], ds.timestamp[pos], ds.item[pos], strict=True))
    neg = np.flatnonzero(~pos)
    assert not any((ds.user[r], ds.timestamp[r], ds.item[r]) in key_pos for r in neg)


def test_bad_options_name_the_problem(simulated: SimulatedData) -> None:
    with pytest.raises(ConfigError, match="not outcome event types"):
        build_dataset(simulated.log, BehaviourDataConfig(behaviours=["wishlist"]))
    with pytest.raises(ConfigError, match="exactly one behaviour"):
        build_dataset(simulated.log, BehaviourDataConfig(negative_rate=0.5))
    log = EventLog(simulated.log.events, has_timestamps=False)
    with pytest.raises(DataError, match="real timestamps"):
        build_dataset(log)


@pytest.mark.dataset
def test_movielens_ratings_become_like_labels() -> None:
    from recpilot.data.readers import read_dataset

    log = read_dataset(dataset_path("ml-100k"), "movielens-100k")
    ds = build_dataset(log)
    assert ds.mode == "rating" and ds.behaviours == ["like"]
    assert len(ds) == 100_000
    value = log.events.sort("timestamp")["value"].to_numpy()
    assert ds.labels.mean() == pytest.approx((value >= 4).mean())
    assert ds.user_side.categorical.keys() >= {"gender", "occupation"}
    assert ds.item_side.categories is not None


@given(
    st.lists(st.floats(1e-6, 1 - 1e-6), min_size=1, max_size=50),
    st.floats(1e-3, 1.0),
)
def test_prior_correction_is_monotone_and_inverts_odds(ps: list[float], rate: float) -> None:
    p = np.sort(np.asarray(ps))
    q = prior_correction(p, rate)
    assert ((q >= 0) & (q <= 1)).all()
    assert (np.diff(q) >= -1e-12).all()
    assert (q <= p + 1e-12).all()  # dropping negatives only ever inflated the odds
    np.testing.assert_allclose(q / (1 - q), rate * p / (1 - p), rtol=1e-6)


@given(st.lists(st.integers(0, 10**6), min_size=3, max_size=200))
def test_time_split_never_puts_a_later_example_earlier(stamps: list[int]) -> None:
    ts = np.asarray(stamps, dtype=np.int64)
    codes = split_codes(ts, time_cutoffs(ts, 0.2, 0.2))
    order = np.argsort(ts, kind="stable")
    assert (np.diff(codes[order]) >= 0).all()
