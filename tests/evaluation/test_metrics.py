"""Metric functions: invariants (hypothesis), hand-computed cases and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recpilot.evaluation import metrics as M
from recpilot.evaluation.evaluator import top_k_ids

fast = settings(max_examples=60, deadline=None)

ranks_st = hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(0, 200))
ks_st = st.integers(1, 50)


def _hits_st() -> st.SearchStrategy[np.ndarray]:
    return st.tuples(st.integers(1, 12), st.integers(1, 15)).flatmap(
        lambda shape: hnp.arrays(bool, shape)
    )


# -- labels ---------------------------------------------------------------------------------------
def test_labels_round_trip() -> None:
    assert M.metric_label(M.HR, 10) == "HR@10"
    assert M.metric_label(M.NDCG, 10) == "NDCG@10"
    assert M.metric_label(M.MRR) == "MRR"
    assert M.metric_label(M.RECALL, 20) == "Recall@20"
    assert M.metric_label(M.PRECISION, 20) == "Precision@20"
    assert M.metric_label(M.COVERAGE, 10) == "Coverage@10"
    assert M.metric_label(M.AVG_POP, 10) == "AvgPop@10"
    assert M.parse_label("NDCG@10") == ("NDCG", 10)
    assert M.parse_label("MRR") == ("MRR", None)
    with pytest.raises(ValueError):
        M.parse_label("HR@x")
    with pytest.raises(ValueError):
        M.metric_label("HR", 0)


# -- rank-based metrics ---------------------------------------------------------------------------
@fast
@given(ranks_st, ks_st)
def test_rank_metrics_in_unit_interval(ranks: np.ndarray, k: int) -> None:
    for values in (M.hit_rate(ranks, k), M.ndcg(ranks, k), M.mrr(ranks)):
        assert values.shape == ranks.shape
        assert np.all((values >= 0) & (values <= 1))


@fast
@given(ranks_st, hnp.arrays(np.int64, 30, elements=st.integers(0, 100)), ks_st)
def test_rank_metrics_with_ties_in_unit_interval(
    ranks: np.ndarray, ties: np.ndarray, k: int
) -> None:
    t = ties[: len(ranks)]
    for values in (M.hit_rate(ranks, k, t), M.ndcg(ranks, k, t), M.mrr(ranks, t)):
        assert np.all((values >= 0) & (values <= 1 + 1e-12))


@fast
@given(st.integers(1, 30), ks_st)
def test_perfect_ranking_scores_one(n: int, k: int) -> None:
    zeros = np.zeros(n)
    assert np.all(M.hit_rate(zeros, k) == 1.0)
    assert np.all(M.ndcg(zeros, k) == 1.0)
    assert np.all(M.mrr(zeros) == 1.0)
    assert np.all(M.hit_rate(zeros, k, zeros) == 1.0)
    assert np.all(M.ndcg(zeros, k, zeros) == 1.0)
    assert np.all(M.mrr(zeros, zeros) == 1.0)


@fast
@given(ks_st)
def test_ndcg_and_mrr_non_increasing_in_rank(k: int) -> None:
    ranks = np.arange(0, 3 * k + 5, dtype=np.float64)
    assert np.all(np.diff(M.ndcg(ranks, k)) <= 0)
    assert np.all(np.diff(M.mrr(ranks)) <= 0)
    assert np.all(np.diff(M.hit_rate(ranks, k)) <= 0)
    half = ranks + 0.5  # fractional (mean tie) ranks keep the order
    assert np.all(np.diff(M.ndcg(half, k)) <= 0)


def test_rank_metrics_by_hand() -> None:
    ranks = np.array([0, 1, 4, 9, 10])
    np.testing.assert_array_equal(M.hit_rate(ranks, 10), [1, 1, 1, 1, 0])
    np.testing.assert_allclose(
        M.ndcg(ranks, 10), [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0]
    )
    np.testing.assert_allclose(M.mrr(ranks), [1.0, 0.5, 0.2, 0.1, 1 / 11])


def test_unreachable_rank_is_a_miss() -> None:
    ranks = np.array([np.inf, 0.0])
    for ties in (None, np.array([0.0, 0.0])):
        np.testing.assert_array_equal(M.hit_rate(ranks, 5, ties), [0.0, 1.0])
        np.testing.assert_array_equal(M.ndcg(ranks, 5, ties), [0.0, 1.0])
        np.testing.assert_array_equal(M.mrr(ranks, ties), [0.0, 1.0])
    with pytest.raises(ValueError):
        M.hit_rate(np.array([-1.0]), 5)


@fast
@given(st.integers(0, 40), st.integers(0, 40), ks_st)
def test_tie_aware_metrics_equal_mean_over_tied_positions(greater: int, ties: int, k: int) -> None:
    positions = np.arange(greater, greater + ties + 1, dtype=np.float64)
    g, t = np.array([greater]), np.array([ties])
    assert M.hit_rate(g, k, t)[0] == pytest.approx(M.hit_rate(positions, k).mean())
    assert M.ndcg(g, k, t)[0] == pytest.approx(M.ndcg(positions, k).mean())
    assert M.mrr(g, t)[0] == pytest.approx(M.mrr(positions).mean(), rel=1e-9)


def test_all_tied_gives_chance() -> None:
    n_items = 100
    ties = np.array([n_items - 1])
    assert M.hit_rate(np.array([0]), 10, ties)[0] == pytest.approx(10 / n_items)


# -- hit-matrix metrics ---------------------------------------------------------------------------
@fast
@given(_hits_st(), st.data())
def test_hit_matrix_metrics_in_unit_interval(hits: np.ndarray, data: st.DataObject) -> None:
    b, k_all = hits.shape
    extra = data.draw(hnp.arrays(np.int64, b, elements=st.integers(0, 5)))
    n_rel = hits.sum(axis=1) + extra  # at least the hits
    k = data.draw(st.integers(1, k_all))
    for values in (
        M.hit_rate_at_k(hits, k),
        M.precision_at_k(hits, k),
        M.recall_at_k(hits, n_rel, k),
        M.ndcg_at_k(hits, n_rel, k),
        M.mrr_at_k(hits, k),
    ):
        assert values.shape == (b,)
        assert np.all((values >= 0) & (values <= 1 + 1e-12))


@fast
@given(hnp.arrays(np.int64, st.integers(1, 20), elements=st.integers(-1, 14)), ks_st)
def test_single_target_hr_equals_recall(position: np.ndarray, k: int) -> None:
    """One relevant item per user at ``position`` (-1: not in the list)."""
    k_all = 15
    hits = np.zeros((len(position), k_all), dtype=bool)
    found = position >= 0
    hits[np.flatnonzero(found), position[found]] = True
    k = min(k, k_all)
    ones = np.ones(len(position))
    np.testing.assert_array_equal(M.hit_rate_at_k(hits, k), M.recall_at_k(hits, ones, k))
    # and NDCG@k of the matrix equals the rank formula
    ranks = np.where(found, position, np.inf)
    np.testing.assert_allclose(M.ndcg_at_k(hits, ones, k), M.ndcg(ranks, k))
    np.testing.assert_allclose(M.mrr_at_k(hits, k), np.where(ranks < k, M.mrr(ranks), 0.0))


def test_hit_matrix_metrics_by_hand() -> None:
    hits = np.array([[True, False, True, False], [False, False, False, True], [False] * 4])
    n_rel = np.array([2, 3, 1])
    np.testing.assert_allclose(M.precision_at_k(hits), [0.5, 0.25, 0.0])
    np.testing.assert_allclose(M.precision_at_k(hits, 3), [2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(M.recall_at_k(hits, n_rel), [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(M.hit_rate_at_k(hits), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(M.mrr_at_k(hits), [1.0, 0.25, 0.0])
    d = 1 / np.log2(np.arange(2, 6))
    np.testing.assert_allclose(
        M.ndcg_at_k(hits, n_rel), [(d[0] + d[2]) / (d[0] + d[1]), d[3] / d[:3].sum(), 0.0]
    )
    perfect = np.array([[True, True, False]])
    assert M.ndcg_at_k(perfect, [2])[0] == pytest.approx(1.0)
    assert M.ndcg_at_k(np.ones((1, 3), bool), [10])[0] == pytest.approx(1.0)  # ideal capped at k
    with pytest.raises(ValueError):
        M.precision_at_k(hits, 5)
    with pytest.raises(ValueError):
        M.recall_at_k(hits, [1, 2])


@fast
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements=st.floats(-100, 100, width=32),
        unique=True,
    ),
    st.integers(1, 50),
)
def test_topk_agrees_with_full_sort(scores: np.ndarray, k: int) -> None:
    ids = top_k_ids(torch.from_numpy(scores.copy()), k)
    kk = min(k, scores.shape[1])
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    np.testing.assert_array_equal(ids[:, :kk], expected)
    assert np.all(ids[:, kk:] == -1)


# -- lists and catalogue --------------------------------------------------------------------------
def test_coverage_popularity_novelty() -> None:
    rec = np.array([[0, 1, -1], [1, 2, 3]])
    assert M.coverage(rec, 8) == pytest.approx(4 / 8)
    assert M.coverage(rec[:, :1], 8) == pytest.approx(2 / 8)
    pop = np.array([10.0, 4.0, 2.0, 0.0, 1, 1, 1, 1])
    np.testing.assert_allclose(M.average_popularity(rec, pop), [7.0, 2.0])
    np.testing.assert_allclose(M.average_popularity(np.full((1, 2), -1), pop), [0.0])
    prob = np.array([0.5, 0.25, 0.125, 0.125])
    np.testing.assert_allclose(M.novelty(rec, prob), [1.5, (2 + 3 + 3) / 3])
    with pytest.raises(ValueError):
        M.novelty(rec, np.array([0.0, 1.0]))


@fast
@given(
    hnp.arrays(
        np.int64, st.tuples(st.integers(1, 10), st.integers(1, 10)), elements=st.integers(-1, 19)
    )
)
def test_coverage_in_unit_interval(rec: np.ndarray) -> None:
    assert 0.0 <= M.coverage(rec, 20) <= 1.0


# -- probabilities --------------------------------------------------------------------------------
def _auc_pairwise(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@fast
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.int64, n, elements=st.integers(0, 1)),
            hnp.arrays(np.int64, n, elements=st.integers(0, 5)),  # few values: many ties
        )
    )
)
def test_auc_matches_pairwise_counting(case: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = case
    if y.min() == y.max():
        with pytest.raises(ValueError, match="one class"):
            M.roc_auc(y, p)
        return
    assert M.roc_auc(y, p) == pytest.approx(_auc_pairwise(y, p))


def test_auc_perfect_and_reversed() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.8, 0.9])
    assert M.roc_auc(y, p) == 1.0
    assert M.roc_auc(y, -p) == 0.0
    assert M.roc_auc(y, np.zeros(5)) == 0.5


@fast
@given(
    st.integers(4, 60).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.int64, n, elements=st.integers(0, 1)),
            hnp.arrays(np.int64, n, elements=st.integers(0, 4)),
            hnp.arrays(np.int64, n, elements=st.integers(0, 3)),
        )
    )
)
def test_grouped_auc_matches_loop(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, p, g = case
    aucs, sizes = [], []
    for key in np.unique(g):
        sel = g == key
        if 0 < y[sel].sum() < sel.sum():
            aucs.append(_auc_pairwise(y[sel], p[sel]))
            sizes.append(sel.sum())
    if not aucs:
        with pytest.raises(ValueError, match="no group"):
            M.grouped_auc(y, p, g)
        return
    res = M.per_group_auc(y, p, g)
    np.testing.assert_allclose(res.auc, aucs)
    np.testing.assert_array_equal(res.sizes, sizes)
    assert M.grouped_auc(y, p, g) == pytest.approx(np.average(aucs, weights=sizes))
    assert M.grouped_auc(y, p, g, weighting="uniform") == pytest.approx(np.mean(aucs))


def test_grouped_auc_string_groups() -> None:
    y = np.array([1, 0, 0, 1, 1, 0])
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.5])
    g = np.array(["a", "a", "b", "b", "c", "c"])
    res = M.per_group_auc(y, p, g)
    assert list(res.groups) == ["a", "b", "c"]
    np.testing.assert_allclose(res.auc, [1.0, 0.0, 0.5])
    with pytest.raises(ValueError):
        M.grouped_auc(y, p, g, weighting="users")


def test_log_loss_and_accuracy() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.4, 0.0])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(1 - 1e-7)) / 4
    assert M.log_loss(y, p) == pytest.approx(expected)
    assert M.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))  # clipped, finite
    assert M.accuracy(y, p) == pytest.approx(0.75)
    assert M.accuracy(y, p, threshold=0.3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="binary"):
        M.accuracy([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError):
        M.log_loss([1, 0], [0.5])


def test_precision_recall_f1_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.55])
    # predicted positive at 0.5: idx 0,1,3,6 -> tp=3 (0,1,6), fp=1 (3), fn=1 (2)
    out = M.precision_recall_f1(y, p, threshold=0.5)
    assert out["precision"] == pytest.approx(3 / 4)
    assert out["recall"] == pytest.approx(3 / 4)
    assert out["f1"] == pytest.approx(3 / 4)
    out = M.precision_recall_f1(y, p, threshold=0.65)  # predicted: 0, 3 -> tp=1, fp=1, fn=3
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.25)
    assert out["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    none = M.precision_recall_f1(y, p, threshold=0.99)
    assert none["precision"] == 0.0 and none["f1"] == 0.0


def test_ece_zero_for_calibrated_bins() -> None:
    # bin of p=0.25 with 1/4 positives, bin of p=0.75 with 3/4 positives, bin of p=0.5 with 1/2
    p = np.array([0.25] * 4 + [0.75] * 8 + [0.5] * 2)
    y = np.array([1, 0, 0, 0] + [1, 1, 1, 0] * 2 + [1, 0])
    assert M.expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    curve = M.reliability_curve(y, p, n_bins=10)
    assert curve.counts.sum() == len(y)
    assert curve.counts[2] == 4 and curve.counts[7] == 8 and curve.counts[5] == 2
    np.testing.assert_allclose(curve.centers, (np.arange(10) + 0.5) / 10)
    np.testing.assert_allclose(curve.fraction_positive[[2, 5, 7]], [0.25, 0.5, 0.75])
    assert np.isnan(curve.mean_predicted[0])


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.9, 0.9, 1.0, 0.2])  # 1.0 falls in the last bin
    # bins (15): 0.2 -> bin 3 (gap 0.8, n=1); 0.9/0.9/1.0 -> bin 13 (0.9) and bin 14 (1.0)
    expected = (1 * 0.8 + 2 * 0.9 + 1 * 0.0) / 4
    assert M.expected_calibration_error(y, p) == pytest.approx(expected)
    assert M.expected_calibration_error([0, 0], [0.9, 0.9]) == pytest.approx(0.9)


@fast
@given(
    st.integers(1, 50).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.int64, n, elements=st.integers(0, 1)),
            hnp.arrays(np.float64, n, elements=st.floats(0, 1)),
        )
    )
)
def test_probability_metrics_in_range(case: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = case
    assert 0.0 <= M.expected_calibration_error(y, p) <= 1.0
    assert 0.0 <= M.accuracy(y, p) <= 1.0
    assert M.log_loss(y, p) >= 0.0
    assert all(0.0 <= v <= 1.0 for v in M.precision_recall_f1(y, p).values())
