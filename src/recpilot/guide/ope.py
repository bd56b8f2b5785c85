"""Off-policy evaluation from logged propensities: IPS and self-normalised IPS with CIs.

Logged data: for each request (list) the items shown, the propensity of each under the
logging policy (the probability of that item at that slot, as the guide stages log it) and
the reward (click). A target policy's value — expected reward per list — is estimated with
the item-position model: each slot's reward depends on the item shown and the context, not on
the other slots, so

    V_IPS   = 1/N  sum_n sum_j  w_nj r_nj,          w_nj = pi(a_nj | x_n, j) / mu(a_nj | x_n, j)
    V_SNIPS = sum_n sum_j w_nj r_nj / (1/J sum_n sum_j w_nj)

IPS is unbiased when the logging policy gives every action the target can take a non-zero
propensity; SNIPS trades a small bias for much less variance. Intervals: normal approximation
over requests (IPS), delta method for the ratio (SNIPS), or a seeded bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A policy value with its confidence interval.

    ``ess``: effective sample size of the weights ``(sum w)^2 / sum w^2`` (small values warn of
    a high-variance estimate).
    """

    value: float
    low: float
    high: float
    n: int
    ess: float
    method: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "ess": self.ess,
            "method": self.method,
        }


def _as_matrix(name: str, a: npt.ArrayLike) -> npt.NDArray[np.float64]:
    m = np.asarray(a, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise ValueError(f"{name} must be (N,) or (N, K), got shape {m.shape}")
    return m


def importance_weights(
    target: npt.ArrayLike, logging: npt.ArrayLike, clip: float | None = None
) -> npt.NDArray[np.float64]:
    """``target / logging`` per logged action, optionally clipped at ``clip``.

    Raises:
        ValueError: shapes differ, a propensity is outside [0, 1], or a logging propensity is
            0 (the action could not have been logged; the log is wrong).
    """
    t, lg = _as_matrix("target propensities", target), _as_matrix("logging propensities", logging)
    if t.shape != lg.shape:
        raise ValueError(
            f"target propensities {t.shape} and logging propensities {lg.shape} differ"
        )
    for name, m in (("target", t), ("logging", lg)):
        if np.any(m < 0) or np.any(m > 1) or not np.all(np.isfinite(m)):
            raise ValueError(f"{name} propensities must lie in [0, 1]")
    if np.any(lg == 0):
        raise ValueError(
            f"{int((lg == 0).sum())} logged action(s) have logging propensity 0: an action "
            "that was shown cannot have probability 0 (check the propensity log)"
        )
    w = t / lg
    return np.minimum(w, clip) if clip is not None else w


def _ess(w: npt.NDArray[np.float64]) -> float:
    s2 = float((w**2).sum())
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


def ips(
    rewards: npt.ArrayLike,
    target: npt.ArrayLike,
    logging: npt.ArrayLike,
    confidence: float = 0.95,
    clip: float | None = None,
) -> Estimate:
    """Inverse propensity scoring: expected reward per list under the target policy.

    Args:
        rewards: ``(N, K)`` (or ``(N,)``) rewards of the logged actions (e.g. clicks).
        target: the target policy's probability of each logged action at its slot.
        logging: the logging policy's propensity of each logged action.
        confidence: coverage of the normal-approximation interval over the ``N`` requests.
        clip: clip weights at this value (biased, lower variance); None: no clipping.
    """
    r = _as_matrix("rewards", rewards)
    w = importance_weights(target, logging, clip)
    if r.shape != w.shape:
        raise ValueError(f"rewards {r.shape} and propensities {w.shape} differ")
    per_list = (w * r).sum(axis=1)
    n = len(per_list)
    value = float(per_list.mean()) if n else float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    se = float(per_list.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(value, value - z * se, value + z * se, n, _ess(w.ravel()), "ips")


def snips(
    rewards: npt.ArrayLike,
    target: npt.ArrayLike,
    logging: npt.ArrayLike,
    confidence: float = 0.95,
    clip: float | None = None,
) -> Estimate:
    """Self-normalised IPS (Swaminathan & Joachims 2015), per list, with a delta-method CI.

    The weights are normalised to mean 1 per slot, so the estimate is a weighted mean of the
    logged rewards and stays within their range.
    """
    r = _as_matrix("rewards", rewards)
    w = importance_weights(target, logging, clip)
    if r.shape != w.shape:
        raise ValueError(f"rewards {r.shape} and propensities {w.shape} differ")
    n, k = r.shape
    num = (w * r).sum(axis=1)  # (N,)
    den = w.sum(axis=1) / k  # (N,) mean weight per slot
    if n == 0 or den.sum() <= 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, n, 0.0, "snips")
    value = float(num.sum() / den.sum())
    # delta method for a ratio of means: var(num - value * den) / (n * mean(den)^2)
    resid = num - value * den
    se = float(np.sqrt(resid.var(ddof=1) / n) / den.mean()) if n > 1 else float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Estimate(value, value - z * se, value + z * se, n, _ess(w.ravel()), "snips")


def slates_from_log(
    request_ids: Sequence[str],
    positions: npt.ArrayLike,
    propensities: npt.ArrayLike,
    rewards: npt.ArrayLike,
    target: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Impression rows (one per shown item, as the service logs them) → per-list matrices.

    Args:
        request_ids: ``(n,)`` the list each impression belongs to.
        positions: ``(n,)`` 0-based slot.
        propensities: ``(n,)`` logging propensities (None/NaN: logged before propensities
            existed, taken as 1, i.e. a deterministic list).
        rewards: ``(n,)`` e.g. 1 when the user clicked the item after seeing it.
        target: ``(n,)`` the target policy's probability of each logged action (None: the
            logging policy itself, i.e. its own propensities: weight 1, the on-policy value).

    Returns:
        ``(rewards, target, logging)``, each ``(N, K)`` for ``N`` lists and ``K`` the longest;
        empty slots have reward 0, target 0 and logging propensity 1 (weight 0).
    """
    req = list(request_ids)
    pos = np.asarray(positions, dtype=np.int64)
    prop = np.asarray(propensities, dtype=np.float64)
    prop = np.where(np.isnan(prop), 1.0, prop)
    rew = np.asarray(rewards, dtype=np.float64)
    tgt = prop.copy() if target is None else np.asarray(target, dtype=np.float64)
    if not (len(pos) == len(prop) == len(rew) == len(tgt) == len(req)):
        raise ValueError(
            "request_ids, positions, propensities, rewards and target differ in length"
        )
    if len(req) and pos.min() < 0:
        raise ValueError("positions must be >= 0")
    order = {r: n for n, r in enumerate(dict.fromkeys(req))}
    rows = np.asarray([order[r] for r in req], dtype=np.int64)
    n, k = len(order), (int(pos.max()) + 1 if len(pos) else 0)
    R, T, L = np.zeros((n, k)), np.zeros((n, k)), np.ones((n, k))
    R[rows, pos], T[rows, pos], L[rows, pos] = rew, tgt, prop
    return R, T, L


def bootstrap(
    estimator: str,
    rewards: npt.ArrayLike,
    target: npt.ArrayLike,
    logging: npt.ArrayLike,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap interval (requests resampled) for ``"ips"`` or ``"snips"``."""
    if estimator not in ("ips", "snips"):
        raise ValueError(f"estimator must be 'ips' or 'snips', got {estimator!r}")
    fn = ips if estimator == "ips" else snips
    r = _as_matrix("rewards", rewards)
    t, lg = _as_matrix("target", target), _as_matrix("logging", logging)
    point = fn(r, t, lg, confidence)
    rng = np.random.default_rng(seed)
    n = len(r)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(n, size=n)
        values[b] = fn(r[idx], t[idx], lg[idx], confidence).value
    lo, hi = np.nanquantile(values, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Estimate(point.value, float(lo), float(hi), n, point.ess, f"{estimator}-bootstrap")


__all__ = ["Estimate", "bootstrap", "importance_weights", "ips", "slates_from_log", "snips"]
