"""Evaluation metrics as pure, vectorised numpy functions, one concept each.

Three families:

- **Rank of a single target** (leave-one-out): `hit_rate`, `ndcg`, `mrr` take the 0-based
  rank of each user's target among the eligible items and return one value per user. Ties can
  be handled exactly: pass ``ties`` (how many *other* eligible items share the target's score)
  and each metric returns its expectation under a uniformly random order of the tied items
  (McSherry & Najork, ECIR 2008), so a model that scores everything alike gets what chance
  gives, never a free hit.
- **Top-k hit matrices** (several targets per user, e.g. a temporal split): `precision_at_k`,
  `recall_at_k`, `ndcg_at_k`, `hit_rate_at_k`, `mrr_at_k` take ``hits`` ``(B, K)`` (whether the
  j-th recommended item is relevant) and return one value per user.
- **Lists and catalogue**: `coverage`, `average_popularity`, `novelty` take recommended ids
  ``(B, K)`` padded with -1.
- **Probabilities** (behaviour prediction): `roc_auc`, `per_group_auc`, `grouped_auc`,
  `log_loss`, `accuracy`, `precision_recall_f1`, `expected_calibration_error`,
  `reliability_curve`.

Means over users are taken by the caller, so per-user values remain available for confidence
intervals and paired significance tests (`recpilot.evaluation.stats`).

Labels follow one convention, ``NAME@k`` (``"HR@10"``, ``"NDCG@10"``, ``"Recall@20"``) or the
bare name for metrics without a cut-off (``"MRR"``); see `metric_label` and `parse_label`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import digamma
from scipy.stats import rankdata

from recpilot.types import UNKNOWN

F64 = npt.NDArray[np.float64]

# -- labels ---------------------------------------------------------------------------------------
HR = "HR"
NDCG = "NDCG"
MRR = "MRR"
PRECISION = "Precision"
RECALL = "Recall"
COVERAGE = "Coverage"
AVG_POP = "AvgPop"
NOVELTY = "Novelty"


def metric_label(name: str, k: int | None = None) -> str:
    """The label of a metric: ``metric_label("HR", 10) == "HR@10"``, ``metric_label("MRR") == "MRR"``."""
    if k is None:
        return name
    if k < 1:
        raise ValueError(f"a metric cut-off k must be >= 1, got {k}")
    return f"{name}@{k}"


def parse_label(label: str) -> tuple[str, int | None]:
    """Inverse of `metric_label`: ``"NDCG@10" -> ("NDCG", 10)``, ``"MRR" -> ("MRR", None)``."""
    name, sep, k = label.partition("@")
    if not sep:
        return name, None
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"cannot parse metric label {label!r}: expected NAME or NAME@k, k >= 1")
    return name, int(k)


# -- helpers --------------------------------------------------------------------------------------
def _as_float(a: npt.ArrayLike) -> F64:
    return np.asarray(a, dtype=np.float64)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _ranks_and_ties(ranks: npt.ArrayLike, ties: npt.ArrayLike | None) -> tuple[F64, F64]:
    r = _as_float(ranks)
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise ValueError("ranks must be >= 0 (use +inf for a target that cannot be ranked)")
    if ties is None:
        return r, np.zeros_like(r)
    t = np.broadcast_to(_as_float(ties), r.shape)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("ties must be finite and >= 0")
    return r, t


def _discount_prefix(k: int) -> F64:
    """``D[j] = sum_{p<j} 1/log2(p+2)`` for ``j = 0..k``, shape ``(k + 1,)``."""
    out = np.zeros(k + 1)
    np.cumsum(1.0 / np.log2(np.arange(k) + 2.0), out=out[1:])
    return out


# -- rank of a single target ----------------------------------------------------------------------
def hit_rate(ranks: npt.ArrayLike, k: int, ties: npt.ArrayLike | None = None) -> F64:
    """Whether the target is in the top ``k``, per user.

    Args:
        ranks: ``(B,)`` 0-based rank of each target among the eligible items (the number of
            items placed above it); ``+inf`` for a target that cannot be recommended.
            Without ``ties`` a fractional rank (e.g. a mean tie rank) is compared as is.
        k: list length.
        ties: ``(B,)`` number of other eligible items with exactly the target's score; the
            result is then the probability of a hit when ties are ordered at random, i.e.
            ``clip((k - rank) / (ties + 1), 0, 1)`` with ``rank`` the number of items scored
            strictly higher.

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    _check_k(k)
    r, t = _ranks_and_ties(ranks, ties)
    if ties is None:
        return (r < k).astype(np.float64)
    with np.errstate(invalid="ignore"):
        p = np.clip((k - r) / (t + 1.0), 0.0, 1.0)
    return np.where(np.isfinite(r), p, 0.0)


def ndcg(ranks: npt.ArrayLike, k: int, ties: npt.ArrayLike | None = None) -> F64:
    """NDCG@k of a single relevant item: ``1 / log2(rank + 2)`` if ``rank < k`` else 0.

    Args:
        ranks: ``(B,)`` 0-based ranks (see `hit_rate`).
        k: list length.
        ties: ``(B,)`` tied items; the result is then the mean gain over the positions
            ``rank .. rank + ties`` the target may take (integer ``rank`` expected).

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    _check_k(k)
    r, t = _ranks_and_ties(ranks, ties)
    finite = np.isfinite(r)
    out = np.zeros_like(r)
    if ties is None:
        hit = finite & (r < k)
        out[hit] = 1.0 / np.log2(r[hit] + 2.0)
        return out
    prefix = _discount_prefix(k)
    rf, tf = r[finite], t[finite]
    lo = np.minimum(np.floor(rf), k).astype(np.int64)
    hi = np.minimum(np.floor(rf + tf) + 1, k).astype(np.int64)
    out[finite] = (prefix[hi] - prefix[lo]) / (tf + 1.0)
    return out


def mrr(ranks: npt.ArrayLike, ties: npt.ArrayLike | None = None) -> F64:
    """Reciprocal rank ``1 / (rank + 1)`` over the full ranking (no cut-off), per user.

    Args:
        ranks: ``(B,)`` 0-based ranks (see `hit_rate`).
        ties: ``(B,)`` tied items; the result is then the mean of ``1/(p+1)`` over the
            positions ``p = rank .. rank + ties``, computed with harmonic numbers.

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    r, t = _ranks_and_ties(ranks, ties)
    finite = np.isfinite(r)
    out = np.zeros_like(r)
    if ties is None:
        out[finite] = 1.0 / (r[finite] + 1.0)
        return out
    rf, tf = r[finite], t[finite]
    # sum_{p=r}^{r+t} 1/(p+1) = H(r+t+1) - H(r) = psi(r+t+2) - psi(r+1)
    small = tf == 0  # exact formula where there is no tie (avoids digamma round-off)
    val = np.empty_like(rf)
    val[small] = 1.0 / (rf[small] + 1.0)
    big = ~small
    val[big] = (digamma(rf[big] + tf[big] + 2.0) - digamma(rf[big] + 1.0)) / (tf[big] + 1.0)
    out[finite] = np.clip(val, 0.0, 1.0)
    return out


# -- top-k hit matrices ---------------------------------------------------------------------------
def _hits(hits: npt.ArrayLike, k: int | None) -> tuple[npt.NDArray[np.bool_], int]:
    h = np.asarray(hits, dtype=bool)
    if h.ndim != 2:
        raise ValueError(f"hits must be a (B, K) matrix, got shape {h.shape}")
    if k is None:
        k = h.shape[1]
    _check_k(k)
    if k > h.shape[1]:
        raise ValueError(f"k={k} exceeds the {h.shape[1]} columns of the hit matrix")
    return h[:, :k], k


def _relevant(n_relevant: npt.ArrayLike, n_rows: int) -> F64:
    n = _as_float(n_relevant).reshape(-1)
    if len(n) != n_rows:
        raise ValueError(f"n_relevant has {len(n)} entries, expected {n_rows} (one per row)")
    if np.any(n < 0):
        raise ValueError("n_relevant must be >= 0")
    return n


def hit_rate_at_k(hits: npt.ArrayLike, k: int | None = None) -> F64:
    """Whether any of the top ``k`` items is relevant, per user.

    Args:
        hits: ``(B, K)`` bool, ``hits[b, j]``: the j-th recommended item of row b is relevant.
        k: cut-off (default: all ``K`` columns).

    Returns:
        ``(B,)`` float64 in {0, 1}.
    """
    h, _ = _hits(hits, k)
    return np.asarray(h.any(axis=1), dtype=np.float64)


def precision_at_k(hits: npt.ArrayLike, k: int | None = None) -> F64:
    """Share of the top ``k`` items that are relevant, per user (padding counts as a miss).

    Args:
        hits: ``(B, K)`` bool hit matrix.
        k: cut-off (default: ``K``).

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    h, k = _hits(hits, k)
    return np.asarray(h.sum(axis=1) / float(k), dtype=np.float64)


def recall_at_k(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int | None = None) -> F64:
    """Share of the relevant items found in the top ``k``: ``hits / n_relevant``, per user.

    With one relevant item per user this equals `hit_rate_at_k`. Rows with no relevant item
    score 0.

    Args:
        hits: ``(B, K)`` bool hit matrix.
        n_relevant: ``(B,)`` number of relevant items per row (those unreachable included).
        k: cut-off (default: ``K``).

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    h, _ = _hits(hits, k)
    n = _relevant(n_relevant, len(h))
    found = h.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(n > 0, found / np.maximum(n, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def ndcg_at_k(hits: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int | None = None) -> F64:
    """Binary-relevance NDCG@k per user.

    ``DCG = sum_j hits[j] / log2(j + 2)``; the ideal DCG places ``min(n_relevant, k)`` relevant
    items first. Rows with no relevant item score 0.

    Args:
        hits: ``(B, K)`` bool hit matrix.
        n_relevant: ``(B,)`` number of relevant items per row.
        k: cut-off (default: ``K``).

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    h, k = _hits(hits, k)
    n = _relevant(n_relevant, len(h))
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = h.astype(np.float64) @ disc
    ideal = _discount_prefix(k)[np.minimum(n, k).astype(np.int64)]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def mrr_at_k(hits: npt.ArrayLike, k: int | None = None) -> F64:
    """Reciprocal rank of the first relevant item within the top ``k`` (0 if none), per user.

    Args:
        hits: ``(B, K)`` bool hit matrix.
        k: cut-off (default: ``K``).

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    h, _ = _hits(hits, k)
    any_hit = h.any(axis=1)
    first = np.argmax(h, axis=1)
    return np.where(any_hit, 1.0 / (first + 1.0), 0.0)


# -- lists and catalogue --------------------------------------------------------------------------
def coverage(rec_ids: npt.ArrayLike, n_items: int) -> float:
    """Catalogue coverage: distinct recommended items / ``n_items`` (-1 padding ignored).

    Args:
        rec_ids: ``(B, K)`` recommended item indices, -1 for padding.
        n_items: catalogue size ``I``.

    Returns:
        A float in [0, 1].
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    ids = np.asarray(rec_ids, dtype=np.int64).reshape(-1)
    ids = ids[(ids >= 0) & (ids < n_items)]
    return float(len(np.unique(ids)) / n_items)


def _mean_over_list(rec_ids: npt.ArrayLike, values: F64) -> F64:
    """Mean of ``values[item]`` over each row's valid ids (0 for rows with none)."""
    ids = np.asarray(rec_ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"rec_ids must be a (B, K) matrix, got shape {ids.shape}")
    valid = (ids != UNKNOWN) & (ids >= 0) & (ids < len(values))
    gathered = np.where(valid, values[np.where(valid, ids, 0)], 0.0)
    counts = valid.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, gathered.sum(axis=1) / np.maximum(counts, 1), 0.0)


def average_popularity(rec_ids: npt.ArrayLike, item_popularity: npt.ArrayLike) -> F64:
    """Mean popularity of each row's recommended items (ARP; -1 padding ignored).

    Args:
        rec_ids: ``(B, K)`` recommended item indices, -1 for padding.
        item_popularity: ``(I,)`` popularity per item, e.g. training event counts.

    Returns:
        ``(B,)`` float64 in the unit of ``item_popularity`` (0 for rows with no item).
    """
    return _mean_over_list(rec_ids, _as_float(item_popularity).reshape(-1))


def novelty(rec_ids: npt.ArrayLike, item_probability: npt.ArrayLike) -> F64:
    """Mean self-information ``-log2 p(item)`` of each row's recommended items, in bits.

    Args:
        rec_ids: ``(B, K)`` recommended item indices, -1 for padding.
        item_probability: ``(I,)`` probability that a random event is on each item, in (0, 1]
            (smooth it, e.g. ``(count + 1) / (total + I)``, so unseen items stay finite).

    Returns:
        ``(B,)`` float64 >= 0 (0 for rows with no item).
    """
    p = _as_float(item_probability).reshape(-1)
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("item_probability must lie in (0, 1]; smooth zero counts first")
    return _mean_over_list(rec_ids, -np.log2(p))


# -- probabilities --------------------------------------------------------------------------------
def _labels_probs(y_true: npt.ArrayLike, p: npt.ArrayLike) -> tuple[F64, F64]:
    y = _as_float(y_true).reshape(-1)
    s = _as_float(p).reshape(-1)
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} entries but the predictions have {len(s)}")
    if len(y) == 0:
        raise ValueError("cannot compute a metric on empty inputs")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must hold binary labels 0/1")
    return y, s


def roc_auc(y_true: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties count one half).

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` scores or probabilities (only their order matters).

    Raises:
        ValueError: when ``y_true`` holds a single class (AUC is undefined).
    """
    y, s = _labels_probs(y_true, p)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        only = "positive" if n_neg == 0 else "negative"
        raise ValueError(
            f"ROC AUC is undefined when y_true holds one class: all {len(y)} labels are {only}"
        )
    ranks = rankdata(s, method="average")
    u = float(ranks[y == 1].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


class GroupAUC(NamedTuple):
    """Per-group AUC: ``groups[g]`` with ``auc[g]`` over ``sizes[g]`` impressions."""

    groups: np.ndarray
    auc: F64
    sizes: npt.NDArray[np.int64]


def per_group_auc(y_true: npt.ArrayLike, p: npt.ArrayLike, groups: npt.ArrayLike) -> GroupAUC:
    """AUC within each group (e.g. user) that holds both classes, vectorised.

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` scores.
        groups: ``(N,)`` group keys (any sortable dtype).

    Returns:
        `GroupAUC` over the groups with at least one positive and one negative, sorted by key.
    """
    y, s = _labels_probs(y_true, p)
    g = np.asarray(groups).reshape(-1)
    if len(g) != len(y):
        raise ValueError(f"groups has {len(g)} entries, expected {len(y)}")
    keys, gid = np.unique(g, return_inverse=True)
    order = np.lexsort((s, gid))
    gs, ss, ys = gid[order], s[order], y[order]
    n = len(gs)
    # tie blocks: maximal runs with the same group and the same score
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])
    block_id = np.cumsum(new_block) - 1
    block_start = np.flatnonzero(new_block)
    block_end = np.r_[block_start[1:], n]  # exclusive
    n_groups = len(keys)
    group_start = np.searchsorted(gs, np.arange(n_groups), side="left")
    # 1-based average rank within the group
    avg_rank = (block_start + block_end - 1) / 2.0 - group_start[gs[block_start]] + 1.0
    rank = avg_rank[block_id]
    n_pos = np.bincount(gs, weights=ys, minlength=n_groups)
    count = np.bincount(gs, minlength=n_groups)
    n_neg = count - n_pos
    r_pos = np.bincount(gs, weights=rank * ys, minlength=n_groups)
    ok = (n_pos > 0) & (n_neg > 0)
    auc = (r_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return GroupAUC(keys[ok], auc, count[ok].astype(np.int64))


def grouped_auc(
    y_true: npt.ArrayLike,
    p: npt.ArrayLike,
    groups: npt.ArrayLike,
    weighting: str = "impressions",
) -> float:
    """Mean per-group AUC (GAUC) over the groups that hold both classes.

    Groups with a single class are skipped, as in the DIN paper's GAUC.

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` scores.
        groups: ``(N,)`` group keys, usually the user.
        weighting: ``"impressions"`` weights each group by its number of rows (GAUC);
            ``"uniform"`` gives every group the same weight (per-user AUC).

    Raises:
        ValueError: when no group holds both classes, or ``weighting`` is unknown.
    """
    if weighting not in ("impressions", "uniform"):
        raise ValueError(f"weighting must be 'impressions' or 'uniform', got {weighting!r}")
    res = per_group_auc(y_true, p, groups)
    if len(res.auc) == 0:
        raise ValueError("grouped AUC is undefined: no group holds both a positive and a negative")
    if weighting == "uniform":
        return float(res.auc.mean())
    return float(np.average(res.auc, weights=res.sizes))


def log_loss(y_true: npt.ArrayLike, p: npt.ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` predicted probabilities of the positive class.
        eps: clipping bound, so a confident mistake costs ``-log(eps)``, not infinity.
    """
    y, s = _labels_probs(y_true, p)
    s = np.clip(s, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(s) + (1.0 - y) * np.log1p(-s)))


def accuracy(y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows where ``p >= threshold`` matches the label."""
    y, s = _labels_probs(y_true, p)
    return float(np.mean((s >= threshold) == (y == 1)))


def precision_recall_f1(
    y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall and F1 of the positive class at ``p >= threshold``.

    A ratio with a zero denominator is 0 (no positive predicted or present).

    Returns:
        ``{"precision": ..., "recall": ..., "f1": ..., "threshold": ...}``.
    """
    y, s = _labels_probs(y_true, p)
    pred = s >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "threshold": float(threshold)}


class ReliabilityCurve(NamedTuple):
    """Equal-width calibration bins over [0, 1], each ``(n_bins,)``.

    Empty bins have ``count == 0`` and NaN means.
    """

    centers: F64
    mean_predicted: F64
    fraction_positive: F64
    counts: npt.NDArray[np.int64]


def reliability_curve(
    y_true: npt.ArrayLike, p: npt.ArrayLike, n_bins: int = 15
) -> ReliabilityCurve:
    """Mean prediction and observed positive rate in ``n_bins`` equal-width bins.

    Bin ``j`` holds ``j/n_bins <= p < (j+1)/n_bins``; the last bin includes 1.

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` probabilities in [0, 1].
        n_bins: number of bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, s = _labels_probs(y_true, p)
    if np.any((s < 0) | (s > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    idx = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=s, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_p = np.where(counts > 0, sum_p / counts, np.nan)
        frac = np.where(counts > 0, sum_y / counts, np.nan)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    return ReliabilityCurve(centers, mean_p, frac, counts.astype(np.int64))


def expected_calibration_error(y_true: npt.ArrayLike, p: npt.ArrayLike, n_bins: int = 15) -> float:
    """ECE: ``sum_j (n_j / N) |mean_p_j - frac_pos_j|`` over equal-width bins.

    Args:
        y_true: ``(N,)`` binary labels.
        p: ``(N,)`` probabilities in [0, 1].
        n_bins: number of bins (15, as in Guo et al. 2017).

    Returns:
        A float in [0, 1].
    """
    curve = reliability_curve(y_true, p, n_bins)
    ok = curve.counts > 0
    gap = np.abs(curve.mean_predicted[ok] - curve.fraction_positive[ok])
    return float(np.sum(curve.counts[ok] * gap) / curve.counts.sum())
