"""Confidence intervals and paired significance tests on per-user metric values.

Every evaluation keeps one value per user and metric (`EvaluationResult.per_user`), so the
uncertainty of a mean and the difference between two models on the same users can be stated,
not guessed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

if TYPE_CHECKING:
    from recpilot.evaluation.evaluator import EvaluationResult

logger = logging.getLogger(__name__)

#: Most resampled values held in memory at once by `bootstrap_ci`.
_BOOTSTRAP_CHUNK = 4_000_000


class Interval(NamedTuple):
    """A mean with its confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float


def _values(values: npt.ArrayLike, what: str = "values") -> npt.NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) == 0:
        raise ValueError(f"{what} is empty: need at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} holds NaN or infinite entries")
    return v


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile: 1.96 for 0.95."""
    _check_confidence(confidence)
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def mean_confidence_interval(values: npt.ArrayLike, confidence: float = 0.95) -> Interval:
    """Normal-approximation interval ``mean ± z · sd / sqrt(n)`` (sample sd, ``ddof=1``).

    With a single value the spread is unknown and the bounds are NaN.

    Args:
        values: ``(n,)`` per-user values.
        confidence: coverage of the interval, e.g. 0.95.
    """
    z = z_value(confidence)
    v = _values(values)
    mean = float(v.mean())
    if len(v) < 2:
        return Interval(mean, math.nan, math.nan)
    half = z * float(v.std(ddof=1)) / math.sqrt(len(v))
    return Interval(mean, mean - half, mean + half)


def bootstrap_ci(
    values: npt.ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean.

    Resamples users with replacement ``n_resamples`` times (in chunks, so memory stays bounded
    whatever the number of users) and takes the ``(1 ± confidence) / 2`` quantiles of the
    resampled means.

    Args:
        values: ``(n,)`` per-user values.
        confidence: coverage of the interval.
        n_resamples: bootstrap replicates.
        seed: seed of the resampling generator (same seed, same interval).
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    v = _values(values)
    n = len(v)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = v[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(v.mean()), float(low), float(high))


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of `paired_test` on two models' per-user values (``a - b``)."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    t_pvalue: float
    wilcoxon_pvalue: float
    alpha: float
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def paired_test(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> PairedTestResult:
    """Compare two models' per-user values on the same users (row ``i`` = same user).

    Runs a paired t-test (`scipy.stats.ttest_rel`) and a Wilcoxon signed-rank test
    (`scipy.stats.wilcoxon`, zero differences dropped, as per Wilcoxon). Degenerate cases are
    answered directly: all differences zero gives p = 1 for both; a constant non-zero
    difference gives t-test p = 0. ``significant`` is True only when *both* tests reject at
    ``alpha`` (conservative: the metrics are bounded and often far from normal).

    Args:
        a: ``(n,)`` per-user values of model A.
        b: ``(n,)`` per-user values of model B.
        confidence: coverage of the interval on the mean difference (normal approximation).
        alpha: significance level.

    Raises:
        ValueError: on length mismatch, empty input or non-finite values.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    va = _values(a, "a")
    vb = _values(b, "b")
    if len(va) != len(vb):
        raise ValueError(
            f"paired test needs the same users in both arrays: got {len(va)} and {len(vb)} values"
        )
    diff = va - vb
    ci = mean_confidence_interval(diff, confidence)
    if np.all(diff == 0):
        t_p, w_p = 1.0, 1.0
    elif len(diff) < 2:
        t_p, w_p = math.nan, math.nan
    else:
        # (numerically) zero variance with a non-zero mean: scipy would warn; the answer is sure
        constant = float(np.ptp(diff)) <= 1e-12 * max(1.0, abs(ci.mean))
        t_p = 0.0 if constant else float(sps.ttest_rel(va, vb).pvalue)
        w_p = float(sps.wilcoxon(diff, zero_method="wilcox").pvalue)
    significant = bool(math.isfinite(t_p) and math.isfinite(w_p) and t_p < alpha and w_p < alpha)
    return PairedTestResult(
        n=len(diff),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        mean_difference=ci.mean,
        ci_low=ci.low,
        ci_high=ci.high,
        confidence=confidence,
        t_pvalue=t_p,
        wilcoxon_pvalue=w_p,
        alpha=alpha,
        significant=significant,
    )


def compare_results(
    result_a: EvaluationResult,
    result_b: EvaluationResult,
    metric: str,
    confidence: float | None = None,
    alpha: float = 0.05,
) -> PairedTestResult:
    """`paired_test` of one metric (a label such as ``"NDCG@10"``) between two evaluations.

    Users are matched by index, so the two results may list them in different orders; users
    without a value (NaN) in either result are left out.

    Args:
        result_a: evaluation of model A.
        result_b: evaluation of model B on the same users.
        metric: label present in both ``per_user`` dicts.
        confidence: interval coverage (default: ``result_a.confidence``).
        alpha: significance level.

    Raises:
        ValueError: if the metric is missing or the two results cover different users.
    """
    for name, res in (("result_a", result_a), ("result_b", result_b)):
        if metric not in res.per_user:
            raise ValueError(
                f"{name} ({res.model}) has no per-user values for {metric!r}; "
                f"available: {sorted(res.per_user)}"
            )
    ua, ub = np.asarray(result_a.users), np.asarray(result_b.users)
    if len(ua) != len(ub) or not np.array_equal(np.sort(ua), np.sort(ub)):
        raise ValueError(
            f"cannot compare {result_a.model} and {result_b.model}: they were evaluated on "
            f"different users ({len(ua)} vs {len(ub)}); evaluate both on the same EvalSet"
        )
    if result_a.split != result_b.split:
        logger.warning(
            "comparing results from different splits: %r vs %r", result_a.split, result_b.split
        )
    va = np.asarray(result_a.per_user[metric], dtype=np.float64)
    vb = np.asarray(result_b.per_user[metric], dtype=np.float64)
    if not np.array_equal(ua, ub):
        va = va[np.argsort(ua, kind="stable")]
        vb = vb[np.argsort(ub, kind="stable")]
    both = np.isfinite(va) & np.isfinite(vb)  # NaN: a user without a value (no list made)
    if not both.all():
        logger.info("%s: comparing the %d users with a value in both results", metric, both.sum())
        va, vb = va[both], vb[both]
    conf = result_a.confidence if confidence is None else confidence
    return paired_test(va, vb, confidence=conf, alpha=alpha)
