"""Confidence intervals and paired significance tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recpilot.evaluation.evaluator import EvaluationResult
from recpilot.evaluation.stats import (
    bootstrap_ci,
    compare_results,
    mean_confidence_interval,
    paired_test,
    z_value,
)

fast = settings(max_examples=40, deadline=None)
values_st = hnp.arrays(np.float64, st.integers(2, 60), elements=st.floats(0, 1))


@fast
@given(values_st, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_normal_ci_contains_mean(values: np.ndarray, confidence: float) -> None:
    iv = mean_confidence_interval(values, confidence)
    assert iv.mean == pytest.approx(values.mean())
    assert iv.low <= iv.mean + 1e-12 and iv.mean <= iv.high + 1e-12


@fast
@given(values_st)
def test_bootstrap_ci_contains_mean(values: np.ndarray) -> None:
    iv = bootstrap_ci(values, 0.95, n_resamples=200, seed=1)
    assert iv.low <= iv.mean + 1e-12 <= iv.high + 2e-12


def test_ci_by_hand_and_edge_cases() -> None:
    v = np.array([0.0, 1.0, 0.0, 1.0])
    iv = mean_confidence_interval(v, 0.95)
    half = z_value(0.95) * np.std(v, ddof=1) / 2.0
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert (iv.low, iv.high) == pytest.approx((0.5 - half, 0.5 + half))
    single = mean_confidence_interval([0.3])
    assert single.mean == 0.3 and math.isnan(single.low) and math.isnan(single.high)
    with pytest.raises(ValueError):
        mean_confidence_interval([])
    with pytest.raises(ValueError):
        mean_confidence_interval([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, float("nan")])


def test_ci_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    widths_normal, widths_boot = [], []
    for n in (50, 500, 5000):
        v = rng.binomial(1, 0.3, size=n).astype(float)
        iv = mean_confidence_interval(v)
        widths_normal.append(iv.high - iv.low)
        bv = bootstrap_ci(v, n_resamples=300, seed=0)
        widths_boot.append(bv.high - bv.low)
    assert widths_normal[0] > widths_normal[1] > widths_normal[2]
    assert widths_boot[0] > widths_boot[1] > widths_boot[2]
    # both methods agree on a large sample
    assert widths_boot[2] == pytest.approx(widths_normal[2], rel=0.2)


def test_bootstrap_is_seeded() -> None:
    v = np.random.default_rng(3).random(100)
    assert bootstrap_ci(v, seed=7) == bootstrap_ci(v, seed=7)
    assert bootstrap_ci(v, seed=7) != bootstrap_ci(v, seed=8)


def test_paired_test_detects_clear_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(200)
    b = a - 0.2 + 0.05 * rng.standard_normal(200)
    res = paired_test(a, b)
    assert res.significant
    assert res.t_pvalue < 1e-10 and res.wilcoxon_pvalue < 1e-10
    assert res.mean_difference == pytest.approx(float((a - b).mean()))
    assert res.ci_low < res.mean_difference < res.ci_high
    assert res.ci_low > 0
    json.dumps(res.to_dict())


def test_paired_test_identical_is_not_significant() -> None:
    a = np.random.default_rng(1).random(50)
    res = paired_test(a, a.copy())
    assert not res.significant
    assert res.t_pvalue == 1.0 and res.wilcoxon_pvalue == 1.0
    assert res.mean_difference == 0.0


def test_paired_test_noise_is_not_significant() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(300)
    b = a + 0.01 * rng.standard_normal(300)  # no systematic shift
    assert not paired_test(a, b, alpha=0.001).significant


def test_paired_test_constant_shift_and_errors() -> None:
    a = np.ones(20)
    res = paired_test(a, a - 0.5)
    assert res.t_pvalue == 0.0 and res.significant
    with pytest.raises(ValueError, match="same users"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_test([1.0], [1.0], alpha=2.0)


def _result(users: np.ndarray, ndcg: np.ndarray, name: str) -> EvaluationResult:
    return EvaluationResult(
        model=name,
        split="test",
        n_users=len(users),
        n_items=10,
        ks=(10,),
        users=users,
        per_user={"NDCG@10": ndcg},
        metrics={"NDCG@10": float(ndcg.mean())},
        ci={},
        confidence=0.95,
        ci_method="normal",
        exclude_seen=True,
        elapsed=0.0,
    )


def test_compare_results_aligns_users() -> None:
    rng = np.random.default_rng(4)
    users = np.arange(40)
    a = rng.random(40)
    b = a - 0.3
    perm = rng.permutation(40)
    ra = _result(users, a, "a")
    rb = _result(users[perm], b[perm], "b")  # same users, other order
    res = compare_results(ra, rb, "NDCG@10")
    assert res.mean_difference == pytest.approx(0.3)
    assert res.t_pvalue == pytest.approx(0.0, abs=1e-12)
    assert res.significant


def test_compare_results_rejects_other_users_or_metric() -> None:
    r = _result(np.arange(5), np.zeros(5), "a")
    other = _result(np.arange(1, 6), np.zeros(5), "b")
    with pytest.raises(ValueError, match="different users"):
        compare_results(r, other, "NDCG@10")
    with pytest.raises(ValueError, match="HR@10"):
        compare_results(r, r, "HR@10")
