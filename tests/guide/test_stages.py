"""Each stage's guarantees: filters, promotion caps, MMR, calibration, boosts, exploration."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recpilot.guide.policy import Pipeline
from recpilot.guide.similarity import EmbeddingSimilarity, intra_list_diversity
from recpilot.guide.stages import (
    EXPLORING,
    MMR,
    PROMOTED,
    AttributeFilter,
    AttributeRule,
    AvailabilityFilter,
    BanditState,
    Calibration,
    CategoryFilter,
    Exploration,
    GuideRequest,
    ItemSpace,
    Promotion,
    ScoreBoost,
    SeenFilter,
    freshness_boost,
    history_distribution,
    miscalibration,
    novelty_values,
)

from .conftest import N_ITEMS


def _request(history: list[int] | np.ndarray, k: int = 10, seed: int = 0) -> GuideRequest:
    return GuideRequest(np.asarray(history, dtype=np.int64), k, np.random.default_rng(seed))


def _model_order(scores: np.ndarray, blocked: np.ndarray, k: int) -> list[int]:
    s = np.where(blocked, -np.inf, scores)
    order = np.lexsort((np.arange(len(s)), -s))
    return [int(i) for i in order if np.isfinite(s[i])][:k]


# -- filters ---------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    history=st.lists(st.integers(0, N_ITEMS - 1), max_size=40),
    k=st.integers(1, 30),
    share=st.floats(0, 1),
)
def test_a_filtered_item_never_appears(
    space: ItemSpace, seed: int, history: list[int], k: int, share: float
) -> None:
    """Seen, unavailable, denied and attribute-failing items never show, even when a promotion
    names them and exploration draws from the pool."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(N_ITEMS).astype(np.float32)
    campaign = rng.choice(N_ITEMS, 15, replace=False)
    pipe = Pipeline(
        [
            SeenFilter(),
            AvailabilityFilter(),
            CategoryFilter(deny=["toys"]),
            AttributeFilter([AttributeRule("price", "<=", 70)]),
            Promotion(campaign, max_share=0.5),
            MMR(0.5),
            Exploration(share, "epsilon", "new", pool_size=20),
        ],
        candidates=40,
    )
    out = pipe.run(scores, _request(history, k, seed), space)
    shown = set(out.items.tolist())
    assert not shown & set(history)
    assert space.available is not None and space.available[out.items].all()
    assert not space.in_categories(["toys"])[out.items].any()
    price = space.attributes["price"][out.items]
    assert all(p is not None and p <= 70 for p in price)
    assert len(shown) == len(out.items)  # no duplicates


def test_category_allow_list_keeps_only_those(space: ItemSpace, scores: np.ndarray) -> None:
    pipe = Pipeline([CategoryFilter(allow=["books", "music"])])
    out = pipe.run(scores, _request([], 20), space)
    assert len(out.items) == 20
    assert space.in_categories(["books", "music"])[out.items].all()


def test_attribute_rule_on_unknown_attribute_names_the_known_ones(space: ItemSpace) -> None:
    f = AttributeFilter([AttributeRule("colour", "==", "red")])
    with pytest.raises(KeyError, match="known attributes: price"):
        f.blocked(space, _request([]))


def test_attribute_rules_in_and_missing_values(space: ItemSpace) -> None:
    values = np.asarray(["a", "b", None, "a"], dtype=object)
    assert AttributeRule("x", "in", ["a"]).passes(values).tolist() == [True, False, False, True]
    assert AttributeRule("x", "not_in", ["a"]).passes(values).tolist() == [
        False,
        True,
        False,
        False,
    ]
    nums = np.asarray([1.0, float("nan"), 5.0, None], dtype=object)
    assert AttributeRule("x", ">", 2).passes(nums).tolist() == [False, False, True, False]


# -- promotion -------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 25),
    cap=st.floats(0, 1),
    positions=st.none() | st.lists(st.integers(0, 30), max_size=8),
)
def test_promotion_share_never_exceeds_its_cap(
    space: ItemSpace, seed: int, k: int, cap: float, positions: list[int] | None
) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(N_ITEMS).astype(np.float32)
    campaign = rng.choice(N_ITEMS, 30, replace=False)
    stage = Promotion(campaign, cap, positions)
    out = Pipeline([SeenFilter(), stage]).run(scores, _request([1, 2, 3], k), space)
    promoted = [j for j, r in enumerate(out.reasons) if r == PROMOTED]
    assert len(promoted) <= int(np.floor(cap * k + 1e-9))
    assert set(out.items[promoted].tolist()) <= set(campaign.tolist())
    if positions is not None:
        assert set(promoted) <= set(positions)
    assert len(out.items) == min(k, N_ITEMS - 3)


def test_promotion_fills_its_slots_with_the_best_campaign_items(space: ItemSpace) -> None:
    scores = np.arange(N_ITEMS, dtype=np.float32)[::-1].copy()  # item 0 best
    campaign = np.asarray([100, 90, 80, 5])  # 5 is already in the list on its own merit
    out = Pipeline([Promotion(campaign, 0.2, positions=[2, 6])]).run(
        scores, _request([], 10), space
    )
    assert out.items[2] == 80 and out.items[6] == 90  # highest-scoring campaign items first
    assert out.reasons[2] == out.reasons[6] == PROMOTED
    assert 5 in out.items.tolist() and out.reasons[out.items.tolist().index(5)] is None
    assert out.items[:2].tolist() == [0, 1]


# -- MMR -------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    scores=st.lists(
        st.sampled_from([0.0, 0.5, 1.0, 1.5, -2.0, 3.25]) | st.floats(-5, 5),
        min_size=N_ITEMS,
        max_size=N_ITEMS,
    ),
    k=st.integers(1, 40),
)
def test_mmr_with_lambda_one_equals_the_model_order(
    space: ItemSpace, scores: list[float], k: int
) -> None:
    s = np.asarray(scores, dtype=np.float32)
    out = Pipeline([MMR(1.0)], candidates=60).run(s, _request([], k), space)
    assert out.items.tolist() == _model_order(s, np.zeros(N_ITEMS, bool), k)


def test_mmr_diversifies_and_names_the_stage(space: ItemSpace) -> None:
    assert space.similarity is not None
    ild = {}
    for lam in (1.0, 0.3):
        lists = []
        for seed in range(30):
            s = np.random.default_rng(seed).standard_normal(N_ITEMS).astype(np.float32)
            out = Pipeline([MMR(lam)], candidates=60).run(s, _request([], 10), space)
            lists.append(out.items)
            if lam < 1:
                changed = set(out.items.tolist()) - set(
                    _model_order(s, np.zeros(N_ITEMS, bool), 10)
                )
                for item in changed:
                    assert out.reasons[out.items.tolist().index(item)] == "to diversify"
        ild[lam] = intra_list_diversity(np.asarray(lists), space.similarity).mean()
    assert ild[0.3] > ild[1.0] + 0.05


def test_mmr_refuses_without_similarity() -> None:
    bare = ItemSpace(10)
    with pytest.raises(ValueError, match="needs item similarity"):
        Pipeline([MMR(0.5)]).run(np.arange(10, dtype=np.float32), _request([], 5), bare)


# -- calibration -----------------------------------------------------------------------------------
def test_calibration_lambda_zero_keeps_order_and_high_lambda_calibrates(space: ItemSpace) -> None:
    rng = np.random.default_rng(1)
    cats = np.asarray(space.categories)
    before, after = [], []
    for _seed in range(25):
        s = rng.standard_normal(N_ITEMS).astype(np.float32)
        # a history mostly of books and games; scores favour music
        history = rng.choice(np.flatnonzero(np.isin(cats, [0, 1])), 8, replace=False)
        s[cats == 2] += 2.0
        req = _request(history, 10)
        base = Pipeline([SeenFilter(), Calibration(0.0)]).run(s, req, space)
        assert base.items.tolist() == Pipeline([SeenFilter()]).run(s, req, space).items.tolist()
        cal = Pipeline([SeenFilter(), Calibration(0.9)]).run(s, req, space)
        p = history_distribution(space, history)
        assert p is not None and space.category_weights is not None
        before.append(miscalibration(p, space.category_weights[base.items]))
        after.append(miscalibration(p, space.category_weights[cal.items]))
    assert np.mean(after) < 0.5 * np.mean(before)


def test_calibration_leaves_users_without_history_alone(
    space: ItemSpace, scores: np.ndarray
) -> None:
    out = Pipeline([Calibration(0.9)]).run(scores, _request([], 10), space)
    assert out.items.tolist() == _model_order(scores, np.zeros(N_ITEMS, bool), 10)


# -- boosts ----------------------------------------------------------------------------------------
def test_freshness_boost_moves_new_items_up(space: ItemSpace) -> None:
    s = np.random.default_rng(5).standard_normal(N_ITEMS).astype(np.float32)
    req = GuideRequest(np.empty(0, np.int64), 10, np.random.default_rng(0), now=30 * 86_400)
    plain = Pipeline([]).run(s, req, space)
    fresh = Pipeline([ScoreBoost(freshness_boost(2.0), 1.0, "new arrival")]).run(s, req, space)
    assert space.created_at is not None
    assert space.created_at[fresh.items].mean() > space.created_at[plain.items].mean()
    assert "new arrival" in fresh.reasons


def test_novelty_values_are_scaled_and_favour_rare_items() -> None:
    v = novelty_values(np.asarray([1000.0, 10.0, 0.0]))
    assert v.min() == 0 and v.max() == 1 and v[0] < v[1] < v[2]


def test_boost_weight_zero_is_the_model_order(space: ItemSpace, scores: np.ndarray) -> None:
    out = Pipeline([ScoreBoost(np.ones(N_ITEMS), 0.0, "x")]).run(scores, _request([], 10), space)
    assert out.items.tolist() == _model_order(scores, np.zeros(N_ITEMS, bool), 10)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ScoreBoost(np.ones(3), -1.0, "x")


# -- exploration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("share", [0.1, 0.3])
@pytest.mark.parametrize("method", ["epsilon", "thompson"])
def test_exploration_share_matches_its_setting(space: ItemSpace, share: float, method: str) -> None:
    rng = np.random.default_rng(11)
    s = rng.standard_normal(N_ITEMS).astype(np.float32)
    stage = Exploration(share, method, "candidates", pool_size=40, n_mc=50)  # type: ignore[arg-type]
    pipe = Pipeline([stage], candidates=80)
    n, k = 600, 10
    explored = 0
    for _ in range(n):
        out = pipe.run(s, GuideRequest(np.empty(0, np.int64), k, rng), space)
        explored += sum(r == EXPLORING for r in out.reasons)
    observed = explored / (n * k)
    sd = np.sqrt(share * (1 - share) / (n * k))
    assert abs(observed - share) < 4 * sd


def test_epsilon_propensities_sum_to_one_per_slot_and_match_frequencies(space: ItemSpace) -> None:
    rng = np.random.default_rng(2)
    s = rng.standard_normal(N_ITEMS).astype(np.float32)
    share, pool = 0.4, 12
    pipe = Pipeline([Exploration(share, "epsilon", "candidates", pool_size=pool)], candidates=40)
    n = 3000
    props: dict[int, dict[int, float]] = defaultdict(dict)
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    for _ in range(n):
        out = pipe.run(s, GuideRequest(np.empty(0, np.int64), 5, rng), space)
        for slot in (0,):  # the first slot's propensities are unconditional
            item = int(out.items[slot])
            prev = props[slot].setdefault(item, float(out.propensities[slot]))
            assert prev == pytest.approx(out.propensities[slot])  # same item, same propensity
            counts[slot][item] += 1
    assert len(props[0]) == pool + 1  # the exploit item and every pool item were seen
    assert sum(props[0].values()) == pytest.approx(1.0)
    for item, p in props[0].items():
        freq = counts[0][item] / n
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_thompson_propensities_track_frequencies(space: ItemSpace) -> None:
    rng = np.random.default_rng(4)
    s = rng.standard_normal(N_ITEMS).astype(np.float32)
    base = Pipeline([], candidates=40).run(s, GuideRequest(np.empty(0, np.int64), 3, rng), space)
    bandit = BanditState(N_ITEMS)
    below = [i for i in _model_order(s, np.zeros(N_ITEMS, bool), 40) if i not in base.items][:6]
    bandit.update(np.repeat(below[:3], 20), np.r_[np.ones(15), np.zeros(5), np.zeros(40)])
    stage = Exploration(1.0, "thompson", "candidates", pool_size=6, bandit=bandit, n_mc=300)
    pipe = Pipeline([stage], candidates=40)
    n = 1500
    freq: Counter[int] = Counter()
    mean_prop: dict[int, list[float]] = defaultdict(list)
    for _ in range(n):
        out = pipe.run(s, GuideRequest(np.empty(0, np.int64), 3, rng), space)
        freq[int(out.items[0])] += 1
        mean_prop[int(out.items[0])].append(float(out.propensities[0]))
    assert freq.most_common(1)[0][0] == below[0]  # 15 clicks of 20: the best posterior
    for item, count in freq.items():
        assert abs(count / n - np.mean(mean_prop[item])) < 0.05


def test_exploration_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="share must be in"):
        Exploration(1.5)
    with pytest.raises(ValueError, match="method must be"):
        Exploration(0.1, "ucb")  # type: ignore[arg-type]


def test_new_items_pool_explores_new_items_first(space: ItemSpace, scores: np.ndarray) -> None:
    pipe = Pipeline([Exploration(1.0, "epsilon", "new", pool_size=5)], candidates=30)
    out = pipe.run(scores, _request([], 5, 9), space)
    assert space.new_items is not None
    blocked_new = {int(i) for i in space.new_items}
    assert set(out.items.tolist()) <= blocked_new


def test_similarity_helpers() -> None:
    sim = EmbeddingSimilarity(np.asarray([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]))
    assert sim.similarity(np.asarray([0]), np.asarray([2]))[0, 0] == pytest.approx(1.0)
    ild = intra_list_diversity(np.asarray([[0, 1, -1], [0, 2, -1]]), sim)
    assert ild.tolist() == pytest.approx([1.0, 0.0])
