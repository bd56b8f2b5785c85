"""Off-policy estimators: unbiasedness, self-normalisation, intervals, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from recpilot.guide.ope import bootstrap, importance_weights, ips, slates_from_log, snips


def _logged_bandit(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Uniform logging over 5 actions with known click rates; target = always action 4."""
    rng = np.random.default_rng(seed)
    rates = np.asarray([0.05, 0.1, 0.2, 0.3, 0.6])
    actions = rng.integers(0, 5, n)
    rewards = (rng.random(n) < rates[actions]).astype(float)
    logging = np.full(n, 0.2)
    target = (actions == 4).astype(float)
    return rewards, target, logging, float(rates[4])


def test_ips_and_snips_recover_the_target_value_within_their_intervals() -> None:
    covered_ips = covered_snips = 0
    for seed in range(40):
        r, t, lg, truth = _logged_bandit(4000, seed)
        a, b = ips(r, t, lg), snips(r, t, lg)
        covered_ips += a.low <= truth <= a.high
        covered_snips += b.low <= truth <= b.high
        assert abs(a.value - truth) < 0.1 and abs(b.value - truth) < 0.1
    assert covered_ips >= 34 and covered_snips >= 34  # ~95% coverage, with slack


def test_on_policy_ips_is_the_mean_reward() -> None:
    rng = np.random.default_rng(0)
    r = rng.random((50, 4))
    p = rng.uniform(0.1, 1.0, (50, 4))
    assert ips(r, p, p).value == pytest.approx(r.sum(axis=1).mean())
    assert snips(r, p, p).value == pytest.approx(r.sum(axis=1).mean())


def test_snips_stays_within_the_reward_range_under_huge_weights() -> None:
    r = np.asarray([1.0, 0.0, 1.0, 0.0])
    t = np.asarray([1.0, 1.0, 0.0, 0.0])
    lg = np.asarray([0.001, 0.5, 0.5, 0.5])
    assert ips(r, t, lg).value > 100
    assert 0.0 <= snips(r, t, lg).value <= 1.0
    assert ips(r, t, lg, clip=10).value == pytest.approx(10 / 4)


def test_bad_propensities_are_named() -> None:
    with pytest.raises(ValueError, match="logging propensity 0"):
        importance_weights([1.0], [0.0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        importance_weights([1.5], [0.5])
    with pytest.raises(ValueError, match="differ"):
        ips(np.ones((2, 3)), np.ones((2, 2)), np.ones((2, 2)))


def test_bootstrap_interval_brackets_the_point() -> None:
    r, t, lg, _ = _logged_bandit(1500, 1)
    est = bootstrap("snips", r, t, lg, n_boot=200, seed=3)
    assert est.low <= est.value <= est.high
    assert est == bootstrap("snips", r, t, lg, n_boot=200, seed=3)  # seeded
    with pytest.raises(ValueError, match="'ips' or 'snips'"):
        bootstrap("dr", r, t, lg)


def test_impression_rows_become_per_list_matrices() -> None:
    rows = ["a", "a", "b", "a", "c"]
    R, T, L = slates_from_log(
        rows, [0, 1, 0, 2, 1], [0.5, float("nan"), 1.0, 0.25, 0.1], [1, 0, 0, 1, 1]
    )
    assert R.shape == (3, 3)
    assert R[0].tolist() == [1, 0, 1] and L[0].tolist() == [0.5, 1.0, 0.25]  # NaN: deterministic
    assert T[2].tolist() == [0, 0.1, 0] and L[2].tolist() == [1, 0.1, 1]  # empty slots weigh 0
    assert ips(R, T, L).value == pytest.approx(3 / 3)  # on-policy: clicks per list
    _, T2, _ = slates_from_log(
        rows, [0, 1, 0, 2, 1], [0.5, 1.0, 1.0, 0.25, 0.1], [1, 0, 0, 1, 1], target=[1, 1, 0, 0, 1]
    )
    assert ips(R, T2, L).value == pytest.approx((1 / 0.5 + 1 / 0.1) / 3)
    with pytest.raises(ValueError, match="differ in length"):
        slates_from_log(["a"], [0, 1], [1.0], [1.0])
