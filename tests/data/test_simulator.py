from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recpilot.config import PreprocessConfig, SimulatorConfig
from recpilot.data.preprocess import build_interactions
from recpilot.data.schema import EventLog
from recpilot.data.simulator import (
    SimulatedData,
    Simulator,
    bayes_optimal_metrics,
    log_loss,
    roc_auc,
)
from recpilot.data.split import leave_one_out
from recpilot.errors import NotFittedError, UnknownIdError

FUNNEL = ("view", "click", "cart", "purchase")


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(SimulatorConfig(seed=7))


@pytest.fixture(scope="module")
def data(sim: Simulator) -> SimulatedData:
    return sim.generate()


def _small(seed: int = 0, **kwargs: float) -> SimulatorConfig:
    return SimulatorConfig(n_users=300, n_items=200, seed=seed, **kwargs)


# -- determinism and schema ---------------------------------------------------------------------
def test_same_seed_gives_identical_frames() -> None:
    a, b = Simulator(_small(3)).generate(), Simulator(_small(3)).generate()
    assert_frame_equal(a.log.events, b.log.events)
    assert_frame_equal(a.truth, b.truth)
    assert a.log.items is not None and b.log.items is not None
    assert_frame_equal(a.log.items, b.log.items)
    assert_frame_equal(a.transitions, b.transitions)


def test_generate_twice_restarts_from_the_seed() -> None:
    sim = Simulator(_small(3))
    first = sim.generate()
    sim.respond([1, 2, 3], [4, 5, 6], rng=0, update_state=True)
    assert_frame_equal(first.log.events, sim.generate().log.events)


def test_different_seed_gives_different_frames() -> None:
    a, b = Simulator(_small(1)).generate(), Simulator(_small(2)).generate()
    assert not a.log.events.equals(b.log.events)
    assert a.log.items is not None and b.log.items is not None
    assert a.log.items["title"].to_list() != b.log.items["title"].to_list()


def test_schema_and_side_tables(data: SimulatedData) -> None:
    log = data.log
    EventLog(log.events, items=log.items, users=log.users)  # validates the canonical schema
    ev = log.events
    assert ev.schema == pl.Schema(
        {
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "timestamp": pl.Int64,
            "event_type": pl.String,
            "value": pl.Float64,
            "session_id": pl.String,
        }
    )
    assert set(ev["event_type"].unique()) == set(FUNNEL)
    assert ev["session_id"].null_count() == 0
    # Purchases carry the price; nothing else has a value.
    assert (
        ev.filter(pl.col("event_type") != "purchase")["value"].null_count()
        == ev.filter(pl.col("event_type") != "purchase").height
    )
    assert log.items is not None and log.users is not None
    items = log.items
    assert items.columns == ["item_id", "title", "category", "price"]
    assert items["item_id"].to_list() == list(range(1, 1001))
    assert items["category"].n_unique() == 12
    assert items["title"].n_unique() > 0.95 * items.height
    assert (items["price"] > 0).all()
    bought = ev.filter(pl.col("event_type") == "purchase").join(items, on="item_id")
    assert (bought["value"] == bought["price"]).all()
    assert log.users.columns == ["user_id", "segment"]
    assert ev["user_id"].is_in(log.users["user_id"].implode()).all()
    assert ev["timestamp"].to_numpy().min() >= SimulatorConfig().start_timestamp_ms


def test_timestamps_non_decreasing_per_user(data: SimulatedData) -> None:
    ev = data.log.events
    assert ev["user_id"].is_sorted()
    diffs = ev.select(pl.col("timestamp").diff().over("user_id").alias("d"))["d"].drop_nulls()
    assert (diffs >= 0).all()


def test_sessions_have_short_inner_and_long_outer_gaps(data: SimulatedData) -> None:
    views = data.log.events.filter(pl.col("event_type") == "view")
    gaps = views.select(
        pl.col("timestamp").diff().over("user_id").alias("gap"),
        (pl.col("session_id") != pl.col("session_id").shift(1).over("user_id")).alias("new"),
    ).drop_nulls()
    inside = gaps.filter(~pl.col("new"))["gap"].median()
    between = gaps.filter(pl.col("new"))["gap"].median()
    assert isinstance(inside, float) and isinstance(between, float)
    assert 1_000 <= inside <= 30 * 60_000  # seconds to minutes
    assert between >= 3_600_000  # hours to days


def test_funnel_consistency(data: SimulatedData) -> None:
    ev = data.log.events.with_row_index("row")
    keys = ["user_id", "item_id", "session_id"]
    for earlier, later in itertools.pairwise(FUNNEL):
        before = ev.filter(pl.col("event_type") == earlier).select(
            *keys, pl.col("timestamp").alias("t0")
        )
        after = ev.filter(pl.col("event_type") == later).select(*keys, "row", "timestamp")
        matched = after.join(before, on=keys, how="left").filter(pl.col("t0") < pl.col("timestamp"))
        # every `later` event has an `earlier` event of the same user, item and session before it
        assert matched["row"].n_unique() == after.height, (earlier, later)


# -- ground truth ---------------------------------------------------------------------------------
def test_truth_aligns_with_views(data: SimulatedData) -> None:
    views = data.log.events.filter(pl.col("event_type") == "view")
    truth = data.truth
    assert truth.height == views.height
    cols = ["user_id", "item_id", "timestamp", "session_id"]
    assert_frame_equal(truth.select(cols), views.select(cols))
    counts = data.log.events["event_type"].value_counts()
    n = dict(zip(counts["event_type"], counts["count"], strict=True))
    assert truth["clicked"].sum() == n["click"]
    assert truth["carted"].sum() == n["cart"]
    assert truth["purchased"].sum() == n["purchase"]


def test_truth_probabilities_are_valid_and_calibrated(data: SimulatedData) -> None:
    truth = data.truth
    for col in ("p_click", "p_cart_given_click", "p_purchase_given_cart", "p_cart", "p_purchase"):
        assert truth[col].is_between(0.0, 1.0).all(), col
    assert (truth["p_cart"] <= truth["p_click"]).all()
    assert (truth["p_purchase"] <= truth["p_cart"]).all()
    for p_col, y_col in (("p_click", "clicked"), ("p_cart", "carted"), ("p_purchase", "purchased")):
        p = truth[p_col].to_numpy()
        sd = np.sqrt(np.sum(p * (1 - p)))
        assert abs(truth[y_col].sum() - p.sum()) < 4 * sd, p_col


def test_bayes_optimal_metrics(data: SimulatedData) -> None:
    for event in ("click", "cart", "purchase"):
        m = bayes_optimal_metrics(data.truth, event)
        assert 0.5 < m["auc"] < 1.0, event
        assert 0 < m["log_loss"] < np.log(2), event
        assert m["n"] == data.truth.height
    with pytest.raises(ValueError, match="event must be one of"):
        bayes_optimal_metrics(data.truth, "rating")  # type: ignore[arg-type]


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 1)  # many ties
    pos, neg = s[y], s[~y]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert roc_auc(y, s) == pytest.approx(pairwise)
    assert roc_auc([0, 1, 1], [0.1, 0.2, 0.3]) == 1.0
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))


# -- structure a model must learn -----------------------------------------------------------------
def test_popularity_is_heavy_tailed(data: SimulatedData) -> None:
    views = data.log.events.filter(pl.col("event_type") == "view")
    counts = np.sort(np.bincount(views["item_id"].to_numpy(), minlength=1001)[1:])[::-1]
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()


def _mean_top_category_share(clicks: pl.DataFrame) -> float:
    per = clicks.group_by("user_id", "category").len()
    share = per.group_by("user_id").agg(
        (pl.col("len").max() / pl.col("len").sum()).alias("share"), pl.col("len").sum().alias("n")
    )
    value = share.filter(pl.col("n") >= 5)["share"].mean()
    assert isinstance(value, float)
    return value


def test_taste_concentrates_clicks_in_few_categories(data: SimulatedData) -> None:
    assert data.log.items is not None
    clicks = (
        data.log.events.filter(pl.col("event_type") == "click")
        .select("user_id", "item_id")
        .join(data.log.items.select("item_id", "category"), on="item_id")
    )
    real = _mean_top_category_share(clicks)
    # Same users, same click counts, same item popularity: only the user-item pairing is lost.
    shuffled = clicks.with_columns(
        pl.Series("user_id", np.random.default_rng(0).permutation(clicks["user_id"].to_numpy()))
    )
    chance = _mean_top_category_share(shuffled)
    assert real > 1 / 12 * 4
    assert real > chance + 0.2


def test_next_click_follows_designated_successors(data: SimulatedData) -> None:
    clicks = data.log.events.filter(pl.col("event_type") == "click")
    pairs = (
        clicks.select(
            "user_id", pl.col("item_id").shift(1).over("user_id").alias("prev"), "item_id"
        )
        .drop_nulls()
        .join(
            data.transitions.select(
                pl.col("item_id").alias("prev"), pl.col("successor_id").alias("item_id")
            ).with_columns(pl.lit(True).alias("hit")),
            on=["prev", "item_id"],
            how="left",
        )
    )
    hit_rate = pairs["hit"].fill_null(False).mean()
    assert isinstance(hit_rate, float)
    chance = data.transitions.height / 1000 / 1000  # successors per item / catalogue size
    assert hit_rate > 30 * chance
    assert hit_rate > 0.15


def test_taste_drifts_over_time() -> None:
    def early_late_similarity(drift: float) -> float:
        """Mean cosine between a user's category histograms of the first and second half."""
        data = Simulator(_small(5, taste_drift=drift, sessions_per_user=8.0)).generate()
        assert data.log.items is not None
        views = data.truth.join(data.log.items.select("item_id", "category"), on="item_id")
        views = views.with_columns(
            (pl.int_range(pl.len()).over("user_id") >= pl.len().over("user_id") / 2).alias("late")
        )
        hist = (
            views.group_by("user_id", "late", "category")
            .len()
            .pivot("late", index=["user_id", "category"], values="len")
            .fill_null(0)
        )
        early, late = pl.col("false"), pl.col("true")
        cos = hist.group_by("user_id").agg(
            ((early * late).sum() / ((early**2).sum() * (late**2).sum()).sqrt()).alias("cos")
        )
        value = cos["cos"].fill_nan(None).mean()
        assert isinstance(value, float)
        return value

    assert early_late_similarity(0.0) > early_late_similarity(1.0) + 0.04


def test_preprocess_and_leave_one_out_work(data: SimulatedData) -> None:
    inter, _ = build_interactions(
        data.log,
        PreprocessConfig(event_types=["click", "cart", "purchase"], deduplicate="user_item"),
    )
    split = leave_one_out(inter)
    assert len(split.test) > 0.6 * data.log.events["user_id"].n_unique()
    assert split.train.n_events > 0


# -- responses to shown items ---------------------------------------------------------------------
def test_respond_is_reproducible_and_calibrated(data: SimulatedData, sim: Simulator) -> None:
    rng = np.random.default_rng(1)
    users = rng.integers(1, 2001, size=20_000)
    items = rng.integers(1, 1001, size=20_000)
    a = sim.respond(users, items, rng=11)
    b = sim.respond(users, items, rng=np.random.default_rng(11))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = sim.respond(users, items, rng=12)
    assert not np.array_equal(a["clicked"], c["clicked"])
    p = a["p_click"]
    assert ((p >= 0) & (p <= 1)).all()
    assert abs(a["clicked"].sum() - p.sum()) < 4 * np.sqrt(np.sum(p * (1 - p)))
    assert (a["carted"] <= a["clicked"]).all() and (a["purchased"] <= a["carted"]).all()
    assert roc_auc(a["clicked"], p) > 0.6


def test_respond_matches_generation_without_drift() -> None:
    sim = Simulator(_small(4, taste_drift=0.0))
    truth = sim.generate().truth.filter(~pl.col("successor"))
    out = sim.respond(truth["user_id"].to_numpy(), truth["item_id"].to_numpy(), rng=0)
    same_context = ~out["successor"]
    np.testing.assert_allclose(
        out["p_click"][same_context], truth["p_click"].to_numpy()[same_context]
    )
    np.testing.assert_allclose(
        out["p_cart"][same_context], truth["p_cart"].to_numpy()[same_context]
    )


def test_respond_update_state_enables_successor_effect() -> None:
    sim = Simulator(_small(6))
    data = sim.generate()
    item = 10
    succ = data.transitions.filter(pl.col("item_id") == item)["successor_id"].to_numpy()
    sim.respond(np.ones(50, dtype=np.int64), np.full(50, item), rng=0, update_state=True)
    assert sim.last_click_[0] == item - 1
    out = sim.respond(np.ones(len(succ), dtype=np.int64), succ, rng=0)
    assert out["successor"].all()


def test_next_item_and_choice_probabilities(sim: Simulator, data: SimulatedData) -> None:
    probs = sim.next_item_probabilities([1, 2, 3])
    assert probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    user = 1
    last = sim.last_click_[user - 1]
    if last >= 0:  # successors of the last click hold at least the follow probability
        succ_mass = probs[0, sim.successors_[last]].sum()
        assert succ_mass >= sim.config.follow_probability - 1e-9
    cands = [5, 50, 500]
    choice = sim.choice_probabilities(user, cands)
    np.testing.assert_allclose(choice.sum(), 1.0)
    np.testing.assert_allclose(choice, probs[0, [4, 49, 499]] / probs[0, [4, 49, 499]].sum())


def test_advance_changes_tastes() -> None:
    sim = Simulator(_small(8))
    sim.generate()
    before = sim.respond([1, 2], [3, 4], rng=0)["p_click"]
    sim.advance(rng=0)
    after = sim.respond([1, 2], [3, 4], rng=0)["p_click"]
    assert not np.allclose(before, after)


def test_errors() -> None:
    sim = Simulator(_small())
    with pytest.raises(NotFittedError, match="generate"):
        sim.respond([1], [1])
    sim.generate()
    with pytest.raises(UnknownIdError, match=r"expected 1\.\.300"):
        sim.respond([0], [1])
    with pytest.raises(UnknownIdError, match="item ids"):
        sim.choice_probabilities(1, [201])
    with pytest.raises(ValueError, match="one item per user"):
        sim.respond([1, 2], [1])


@pytest.mark.parametrize(
    "config",
    [
        SimulatorConfig(n_users=1, n_items=2, n_categories=1, seed=0),
        SimulatorConfig(n_users=5, n_items=3, n_categories=20, sessions_per_user=0.5, seed=0),
        SimulatorConfig(n_users=20, n_items=30, session_length=1.0, follow_probability=1.0),
    ],
)
def test_edge_configs(config: SimulatorConfig) -> None:
    data = Simulator(config).generate()
    assert data.truth.height == data.log.events.filter(pl.col("event_type") == "view").height
    assert data.truth.height >= config.n_users
