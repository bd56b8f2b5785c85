"""Full-ranking evaluator on tiny hand-made data with fixed-score models."""

from __future__ import annotations

import json
import math
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict

from recpilot.config import EvaluationConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import EvalSet, leave_one_out, temporal_split
from recpilot.evaluation import Evaluator, compare_results
from recpilot.evaluation import metrics as M
from recpilot.models.base import Query, Recommender


class FixedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["fixed"] = "fixed"


class FixedScores(Recommender):
    """Scores = one fixed row per user index (a copy per call)."""

    name: ClassVar[str] = "fixed"
    config_class: ClassVar[type[BaseModel]] = FixedConfig

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__()
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def _fit(self, data: Interactions) -> None:
        pass

    def _score(self, query: Query) -> np.ndarray:
        return self.matrix[query.users]

    def _state(self) -> dict[str, np.ndarray]:
        return {"matrix": self.matrix}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.matrix = state["matrix"]


class SharedRow(FixedScores):
    """Returns a read-only view of one stored row for every user (like a popularity model)."""

    name: ClassVar[str] = "shared"

    def _score(self, query: Query) -> np.ndarray:
        return np.broadcast_to(self.matrix[0], (len(query), self.matrix.shape[1]))


def _interactions(rows: list[tuple[str, str, int]]) -> Interactions:
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
    )
    return Interactions.from_frame(frame)


@pytest.fixture
def tiny() -> Interactions:
    # items a..f -> 0..5, users u0..u2 -> 0..2
    return _interactions(
        [
            ("u0", "a", 1),
            ("u0", "b", 2),
            ("u0", "c", 3),
            ("u0", "d", 4),  # test target d=3, history a b c
            ("u1", "e", 1),
            ("u1", "a", 2),
            ("u1", "b", 3),  # test target b=1, history e a
            ("u2", "f", 1),
            ("u2", "c", 2),
            ("u2", "a", 3),
            ("u2", "e", 4),  # test target e=4, history f c a
        ]
    )


TINY_SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.5, 0.6, 0.1],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    ]
)


def test_exact_values_with_seen_masking(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    model = FixedScores(TINY_SCORES).fit(split.train)
    cfg = EvaluationConfig(ks=[1, 3], batch_size=2)
    res = Evaluator(cfg).evaluate(model, split.test, train=split.train)
    # eligible ranks: u0 d behind e -> 1; u1 b behind c d f -> 3; u2 e first -> 0
    assert res.ranks is not None
    np.testing.assert_array_equal(res.ranks, [1, 3, 0])
    np.testing.assert_allclose(res.per_user["HR@1"], [0, 0, 1])
    np.testing.assert_allclose(res.per_user["HR@3"], [1, 0, 1])
    np.testing.assert_allclose(res.per_user["NDCG@3"], [1 / math.log2(3), 0, 1])
    np.testing.assert_allclose(res.per_user["MRR"], [0.5, 0.25, 1.0])
    assert res["HR@3"] == pytest.approx(2 / 3)
    assert res["MRR"] == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert res.n_users == 3 and res.n_items == 6 and res.split == "test" and res.model == "fixed"
    assert res.n_unreachable_targets == 0
    # lists: u0 e d f, u1 f d c, u2 e then b, d (the only other eligible items)
    assert res.recommendations is not None
    np.testing.assert_array_equal(res.recommendations[:2], [[4, 3, 5], [5, 3, 2]])
    assert res.recommendations[2, 0] == 4 and set(res.recommendations[2, 1:]) == {1, 3}
    assert res["Coverage@1"] == pytest.approx(2 / 6)
    assert res["Coverage@3"] == pytest.approx(5 / 6)
    counts = split.train.item_counts()
    np.testing.assert_allclose(res.per_user["AvgPop@1"], counts[[4, 5, 4]])
    np.testing.assert_allclose(res.per_user["AvgPop@3"], counts[res.recommendations].mean(axis=1))
    assert "Novelty@3" in res.per_user
    for label, (lo, hi) in res.ci.items():
        assert lo <= res.metrics[label] + 1e-12 <= hi + 2e-12
    assert "Coverage@3" not in res.ci
    payload = json.loads(json.dumps(res.to_dict(per_user=True, recommendations=True)))
    assert payload["metrics"]["HR@3"] == pytest.approx(2 / 3)
    assert payload["per_user"]["MRR"] == pytest.approx([0.5, 0.25, 1.0])


def test_without_seen_masking(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    model = FixedScores(TINY_SCORES).fit(split.train)
    cfg = EvaluationConfig(ks=[1, 3], exclude_seen=False)
    res = Evaluator(cfg).evaluate(model, split.test)
    # u0: a b c e above d -> 4; u1: c d e f above b -> 4; u2 -> 0
    assert res.ranks is not None
    np.testing.assert_array_equal(res.ranks, [4, 4, 0])
    np.testing.assert_allclose(res.per_user["MRR"], [0.2, 0.2, 1.0])
    np.testing.assert_allclose(res.per_user["HR@3"], [0, 0, 1])
    assert "AvgPop@1" not in res.per_user  # no train given


def test_target_in_history_is_a_miss() -> None:
    data = _interactions([("u0", "a", 1), ("u0", "b", 2), ("u0", "a", 3), ("u1", "c", 1)])
    split = leave_one_out(data)  # u0: target a, history a b
    scores = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    model = FixedScores(scores).fit(split.train)
    res = Evaluator(EvaluationConfig(ks=[1])).evaluate(model, split.test)
    assert res.n_unreachable_targets == 1
    assert res.per_user["HR@1"][0] == 0.0 and res.per_user["MRR"][0] == 0.0
    assert res.ranks is not None
    assert math.isinf(res.ranks[0])
    res = Evaluator(EvaluationConfig(ks=[1], exclude_seen=False)).evaluate(model, split.test)
    assert res.n_unreachable_targets == 0 and res.per_user["HR@1"][0] == 1.0


def _random_eval_set(rng: np.random.Generator, n_users: int, n_items: int) -> EvalSet:
    hists = tuple(
        rng.choice(n_items, size=int(rng.integers(0, 8)), replace=True) for _ in range(n_users)
    )
    targets = []
    for h in hists:
        free = np.setdiff1d(np.arange(n_items), h)
        targets.append(rng.choice(free, size=1))
    return EvalSet(
        "test",
        np.arange(n_users, dtype=np.int64),
        hists,
        tuple(np.asarray(t, dtype=np.int64) for t in targets),
        np.zeros(n_users, dtype=np.int64),
    )


def _fitted(model: Recommender, n_users: int, n_items: int) -> Recommender:
    rows = [(f"u{u:03d}", "i000", 0) for u in range(n_users)]
    rows += [("u000", f"i{i:03d}", 0) for i in range(n_items)]
    data = _interactions(rows)
    assert data.n_items == n_items and data.n_users == n_users
    return model.fit(data)


def test_constant_scores_get_chance_not_free_hits() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 50
    eval_set = _random_eval_set(rng, n_users, n_items)
    model = _fitted(SharedRow(np.zeros((1, n_items))), n_users, n_items)
    res = Evaluator(EvaluationConfig(ks=[10], exclude_seen=False)).evaluate(model, eval_set)
    np.testing.assert_allclose(res.per_user["HR@10"], 10 / n_items)
    assert res["HR@10"] == pytest.approx(10 / n_items)
    harmonic = np.sum(1.0 / np.arange(1, n_items + 1))
    np.testing.assert_allclose(res.per_user["MRR"], harmonic / n_items)
    assert res.ranks is not None
    np.testing.assert_allclose(res.ranks, (n_items - 1) / 2)
    # with masking: chance among the eligible items of each user
    res = Evaluator(EvaluationConfig(ks=[10])).evaluate(model, eval_set)
    eligible = np.array([n_items - len(np.unique(h)) for h in eval_set.histories])
    np.testing.assert_allclose(res.per_user["HR@10"], 10 / eligible)
    assert res["HR@10"] < 0.3


def test_model_array_is_not_modified() -> None:
    rng = np.random.default_rng(1)
    eval_set = _random_eval_set(rng, 5, 12)
    row = rng.random((1, 12))
    model = _fitted(SharedRow(row), 5, 12)
    before = model.matrix.copy()  # type: ignore[attr-defined]
    Evaluator(EvaluationConfig(ks=[3])).evaluate(model, eval_set)
    np.testing.assert_array_equal(model.matrix, before)  # type: ignore[attr-defined]


@pytest.mark.parametrize("decimals", [1, 6])  # 1: many ties, 6: (almost) none
def test_batching_does_not_change_results(decimals: int) -> None:
    rng = np.random.default_rng(2)
    n_users, n_items = 37, 30
    eval_set = _random_eval_set(rng, n_users, n_items)
    scores = np.round(rng.random((n_users, n_items)), decimals)
    model = _fitted(FixedScores(scores), n_users, n_items)
    results = [
        Evaluator(EvaluationConfig(ks=[5, 10], batch_size=bs)).evaluate(model, eval_set)
        for bs in (1, 8, 1000)
    ]
    for other in results[1:]:
        assert other.per_user.keys() == results[0].per_user.keys()
        for label, values in results[0].per_user.items():
            np.testing.assert_array_equal(other.per_user[label], values, err_msg=label)
        np.testing.assert_array_equal(other.ranks, results[0].ranks)
        if decimals == 6:
            np.testing.assert_array_equal(other.recommendations, results[0].recommendations)


def test_ranks_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 25, 20
    eval_set = _random_eval_set(rng, n_users, n_items)
    scores = np.round(rng.random((n_users, n_items)), 1).astype(np.float32)
    model = _fitted(FixedScores(scores), n_users, n_items)
    res = Evaluator(EvaluationConfig(ks=[3], batch_size=7)).evaluate(model, eval_set)
    for b in range(n_users):
        eligible = np.setdiff1d(np.arange(n_items), eval_set.histories[b])
        t = eval_set.targets[b][0]
        s = scores[b, eligible]
        greater = int((s > scores[b, t]).sum())
        ties = int((s == scores[b, t]).sum()) - 1
        assert res.ranks is not None and res.ranks[b] == greater + ties / 2
        positions = np.arange(greater, greater + ties + 1)
        assert res.per_user["HR@3"][b] == pytest.approx(np.mean(positions < 3))
        assert res.per_user["MRR"][b] == pytest.approx(np.mean(1.0 / (positions + 1)))


def test_multi_target_by_hand() -> None:
    eval_set = EvalSet(
        "test",
        np.array([0, 1]),
        (np.array([0]), np.array([], dtype=np.int64)),
        (np.array([1, 3]), np.array([5])),
        np.zeros(2, dtype=np.int64),
    )
    scores = np.array([[9, 8, 7, 6, 5, 4], [6, 5, 4, 3, 2, 1]], dtype=np.float32)
    model = _fitted(FixedScores(scores), 2, 6)
    res = Evaluator(EvaluationConfig(ks=[1, 3])).evaluate(model, eval_set)
    # u0 top-3 (item 0 masked): 1 2 3 -> hits T F T; u1 top-3: 0 1 2 -> none
    assert res.ranks is None
    np.testing.assert_allclose(res.per_user["HR@3"], [1, 0])
    np.testing.assert_allclose(res.per_user["Precision@3"], [2 / 3, 0])
    np.testing.assert_allclose(res.per_user["Recall@3"], [1, 0])
    np.testing.assert_allclose(res.per_user["Recall@1"], [0.5, 0])
    np.testing.assert_allclose(res.per_user["Precision@1"], [1, 0])
    idcg = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(res.per_user["NDCG@3"], [(1 + 1 / math.log2(4)) / idcg, 0])
    np.testing.assert_allclose(res.per_user["NDCG@1"], [1, 0])
    np.testing.assert_allclose(res.per_user["MRR@3"], [1, 0])
    assert res["Coverage@3"] == pytest.approx(4 / 6)


def _reference_top_k(scores: np.ndarray, eval_set: EvalSet, k: int) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {"HR": [], "Recall": [], "Precision": [], "NDCG": []}
    for b in range(len(eval_set)):
        s = scores[b].astype(np.float64).copy()
        s[eval_set.histories[b]] = -np.inf
        ranked = [i for i in np.argsort(-s, kind="stable") if np.isfinite(s[i])][:k]
        rel = set(eval_set.targets[b].tolist())
        gains = [1.0 if i in rel else 0.0 for i in ranked]
        dcg = sum(g / math.log2(j + 2) for j, g in enumerate(gains))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        out["HR"].append(float(any(gains)))
        out["Recall"].append(sum(gains) / len(rel))
        out["Precision"].append(sum(gains) / k)
        out["NDCG"].append(dcg / idcg)
    return {name: np.array(v) for name, v in out.items()}


def test_multi_target_on_temporal_split() -> None:
    rng = np.random.default_rng(5)
    n_users, n_items = 30, 25
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=12, replace=False)
        times = np.sort(rng.choice(1000, size=12, replace=False))
        rows += [(f"u{u:02d}", f"i{i:02d}", int(t)) for i, t in zip(items, times, strict=True)]
    data = _interactions(rows)
    split = temporal_split(data, test_fraction=0.25, validation_fraction=0.15)
    assert not split.test.single_target
    scores = rng.permutation(data.n_users * data.n_items).reshape(data.n_users, -1)
    model = FixedScores(scores.astype(np.float32)).fit(split.train)
    res = Evaluator(EvaluationConfig(ks=[5, 10], batch_size=4)).evaluate(
        model, split.test, train=split.train
    )
    for k in (5, 10):
        ref = _reference_top_k(scores[split.test.users], split.test, k)
        for name, values in ref.items():
            np.testing.assert_allclose(res.per_user[M.metric_label(name, k)], values, err_msg=name)
    assert res.n_users == len(split.test)
    assert f"AvgPop@{10}" in res.metrics


def test_bootstrap_ci_and_comparison(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    good = FixedScores(TINY_SCORES).fit(split.train)
    res_boot = Evaluator(EvaluationConfig(ks=[3]), ci_method="bootstrap", n_resamples=200).evaluate(
        good, split.test
    )
    for label, (lo, hi) in res_boot.ci.items():
        assert lo <= res_boot.metrics[label] <= hi
    res_normal = Evaluator(EvaluationConfig(ks=[3])).evaluate(good, split.test)
    same = compare_results(res_normal, res_boot, "NDCG@3")
    assert same.mean_difference == 0.0 and not same.significant


def test_errors(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    model = FixedScores(TINY_SCORES).fit(split.train)
    empty = EvalSet("test", np.empty(0, np.int64), (), (), np.empty(0, np.int64))
    with pytest.raises(ValueError, match="no users"):
        Evaluator().evaluate(model, empty)
    bad = EvalSet("test", np.array([0]), (np.array([0]),), (np.array([99]),), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="catalogue"):
        Evaluator().evaluate(model, bad)
    with pytest.raises(ValueError):
        Evaluator(ci_method="jackknife")  # type: ignore[arg-type]


def test_train_with_other_vocabulary_skips_popularity(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    model = FixedScores(TINY_SCORES).fit(split.train)
    other = _interactions([("x", "a", 1), ("x", "b", 2)])
    res = Evaluator(EvaluationConfig(ks=[3])).evaluate(model, split.test, train=other)
    assert "AvgPop@3" not in res.metrics and "HR@3" in res.metrics


def test_with_misses_counts_dropped_users(tiny: Interactions) -> None:
    split = leave_one_out(tiny)
    model = FixedScores(TINY_SCORES).fit(split.train)
    res = Evaluator(EvaluationConfig(ks=[1, 3])).evaluate(model, split.test, train=split.train)
    assert res.seconds == res.elapsed >= 0
    more = res.with_misses(2)
    assert more.n_users == 5 and more.n_unreachable_targets == 2
    assert more["HR@3"] == pytest.approx(2 / 5)
    assert more["MRR"] == pytest.approx((0.5 + 0.25 + 1.0) / 5)
    assert more["AvgPop@1"] == pytest.approx(res["AvgPop@1"])  # list metrics skip them
    assert more["Coverage@3"] == res["Coverage@3"]
    lo, hi = more.ci["HR@3"]
    assert lo <= more["HR@3"] <= hi
    assert more.recommendations is not None and more.recommendations.shape == (5, 3)
    np.testing.assert_array_equal(more.users, [0, 1, 2, -1, -1])
    json.dumps(more.to_dict(per_user=True))
    # NaN list values are left out of paired comparisons
    cmp = compare_results(more, more, "AvgPop@3")
    assert cmp.n == 3 and cmp.t_pvalue == 1.0
    assert res.with_misses(0) is res
