"""Full-ranking evaluation of a `Recommender` on an `EvalSet`, keeping per-user values.

Protocol (see DESIGN.md, "Protocols that make numbers comparable"):

- Every user is scored against the **whole catalogue**, in batches of
  ``config.batch_size`` users; one ``(batch_size, I)`` float32 buffer is reused for all batches
  and the model's own score array is never modified.
- With ``exclude_seen`` the items of the user's history are ineligible (masked to -inf). A
  target that is itself in the history can then never be recommended, so it is counted as a
  **miss** (rank +inf, every metric 0) rather than silently unmasked; how often that happened is
  reported as ``n_unreachable_targets`` and logged. The same rule holds for a target whose score
  is NaN.
- **One target per user** (leave-one-out): the target's rank is computed exactly from the scores,
  ``greater`` = eligible items scored strictly higher, ``ties`` = other eligible items with
  exactly the same score. HR@k, NDCG@k and MRR are the expectations under a random order of the
  tied items (`recpilot.evaluation.metrics`), so a constant-score model gets HR@k = k / I, not 1;
  the reported mean rank is ``greater + ties / 2``.
- **Several targets per user** (temporal split): the top ``K = max(ks)`` list comes from
  ``torch.topk`` and HR@k, Precision@k, Recall@k, NDCG@k and MRR@K are read off the hit matrix.
  Ties inside the list are broken by ``torch.topk``'s order. Targets made unreachable by history
  exclusion still count in ``n_relevant`` (recall's denominator).
- Lists: Coverage@k over all evaluated users, and with ``train`` given, AvgPop@k (mean training
  event count of the recommended items) and Novelty@k (mean ``-log2 p(item)`` in bits, with
  ``p = (count + 1) / (events + I)``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from recpilot.config import EvaluationConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import EvalSet
from recpilot.evaluation import metrics as M
from recpilot.evaluation.stats import bootstrap_ci, mean_confidence_interval
from recpilot.models.base import Query, Recommender
from recpilot.progress import progress
from recpilot.types import UNKNOWN, IntArray

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


# -- batch kernels (torch) ------------------------------------------------------------------------
def history_pairs(histories: tuple[IntArray, ...], n_items: int) -> tuple[IntArray, IntArray]:
    """Distinct ``(row, item)`` pairs of a batch's histories, items outside ``[0, I)`` dropped.

    Args:
        histories: ``B`` arrays of item indices.
        n_items: catalogue size ``I``.

    Returns:
        ``(rows, items)``, each ``(P,)`` int64, sorted by row then item.
    """
    lens = [len(h) for h in histories]
    if not sum(lens):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lens)
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
    ok = (cols >= 0) & (cols < n_items)
    keys = np.unique(rows[ok] * n_items + cols[ok])
    return keys // n_items, keys % n_items


def mask_items(scores: torch.Tensor, rows: IntArray, items: IntArray) -> None:
    """Set ``scores[rows, items]`` to -inf in place.

    Args:
        scores: ``(B, I)`` float scores (modified).
        rows: ``(P,)`` row indices.
        items: ``(P,)`` item indices.
    """
    if len(rows):
        scores[torch.from_numpy(rows), torch.from_numpy(items)] = -torch.inf


def target_ranks(
    scores: torch.Tensor,
    targets: IntArray,
    n_masked: IntArray | None = None,
) -> tuple[F64, F64]:
    """Exact rank of one target per row among the eligible items.

    Masked (ineligible) items must hold -inf in ``scores``; ``n_masked`` says how many per row,
    so that a target whose own score is -inf is not counted as tied with them.

    Args:
        scores: ``(B, I)`` scores after masking.
        targets: ``(B,)`` target item index per row (the target itself must not be masked).
        n_masked: ``(B,)`` number of masked items per row (default: none).

    Returns:
        ``(greater, ties)``, each ``(B,)`` float64: eligible items scored strictly higher than
        the target, and other eligible items with exactly its score. Rows whose target score is
        NaN get ``greater = +inf`` (a miss).
    """
    b = scores.shape[0]
    tgt = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    t = scores[torch.arange(b), tgt].unsqueeze(1)  # (B, 1)
    greater = (scores > t).sum(dim=1).numpy().astype(np.float64)  # (B,)
    ties = (scores == t).sum(dim=1).numpy().astype(np.float64) - 1.0  # minus the target itself
    t_np = t.squeeze(1).numpy()
    if n_masked is not None:
        neg = np.isneginf(t_np)
        ties[neg] -= np.asarray(n_masked, dtype=np.float64)[neg]
    nan = np.isnan(t_np)
    greater[nan] = math.inf
    ties[nan] = 0.0
    return greater, np.maximum(ties, 0.0)


def top_k_ids(scores: torch.Tensor, k: int) -> IntArray:
    """Top-``k`` item indices per row with ``torch.topk``; -inf scores and padding become -1.

    Args:
        scores: ``(B, I)`` scores after masking.
        k: list length (rows are padded with -1 when ``k > I``).

    Returns:
        ``(B, k)`` int64, best first.
    """
    n_items = scores.shape[1]
    kk = min(k, n_items)
    vals, idx = torch.topk(scores, kk, dim=1)
    ids = idx.numpy().astype(np.int64)
    ids[~np.isfinite(vals.numpy())] = UNKNOWN
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=UNKNOWN)
    return ids


def hit_matrix(
    rec_ids: IntArray, targets: tuple[IntArray, ...], n_items: int
) -> npt.NDArray[np.bool_]:
    """``hits[b, j]``: whether ``rec_ids[b, j]`` is one of row ``b``'s targets.

    Args:
        rec_ids: ``(B, K)`` recommended item indices, -1 for padding.
        targets: ``B`` arrays of relevant item indices.
        n_items: catalogue size ``I`` (every id is below it).

    Returns:
        ``(B, K)`` bool.
    """
    b = rec_ids.shape[0]
    t_rows, t_cols = history_pairs(targets, n_items)
    keys = np.arange(b, dtype=np.int64)[:, None] * n_items + rec_ids
    return np.isin(keys, t_rows * n_items + t_cols) & (rec_ids >= 0)


def _in_pairs(
    rows: IntArray, items: IntArray, q_items: IntArray, n_items: int
) -> npt.NDArray[np.bool_]:
    """Whether ``(b, q_items[b])`` is among the sorted ``(rows, items)`` pairs, per row ``b``."""
    q = np.arange(len(q_items), dtype=np.int64) * n_items + q_items
    return np.isin(q, rows * n_items + items)


# -- result ---------------------------------------------------------------------------------------
#: Metrics measuring whether the targets were found: a user who could not be ranked scores 0.
ACCURACY_METRICS = frozenset({M.HR, M.NDCG, M.MRR, M.RECALL, M.PRECISION})


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def confidence_interval(
    values: F64,
    confidence: float,
    method: str = "normal",
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """``(low, high)`` interval of the mean of the finite entries of ``values``.

    Args:
        values: ``(n,)`` per-user values (NaN entries, users without a value, are skipped).
        confidence: coverage, e.g. 0.95.
        method: ``"normal"`` or ``"bootstrap"``.
        n_resamples: bootstrap replicates.
        seed: bootstrap seed.
    """
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return math.nan, math.nan
    if method == "bootstrap":
        iv = bootstrap_ci(v, confidence, n_resamples, seed)
    else:
        iv = mean_confidence_interval(v, confidence)
    return iv.low, iv.high


def _mean(values: F64) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


@dataclass
class EvaluationResult:
    """Metrics of one model on one evaluation set, with the per-user values behind them.

    Attributes:
        model: model name.
        split: evaluation set name (``"validation"``/``"test"``).
        n_users: users evaluated.
        n_items: catalogue size ranked against.
        ks: cut-offs.
        users: ``(n_users,)`` user indices, the row order of every per-user array.
        per_user: label → ``(n_users,)`` float64 values (e.g. ``"NDCG@10"``).
        metrics: label → mean over users; also catalogue-level metrics (``"Coverage@10"``).
        ci: label → ``(low, high)`` confidence interval of the mean (per-user metrics only).
        confidence: coverage of ``ci``.
        ci_method: ``"normal"`` or ``"bootstrap"``.
        n_resamples: bootstrap replicates behind ``ci`` (bootstrap only).
        seed: bootstrap seed behind ``ci`` (bootstrap only).
        exclude_seen: whether history items were masked.
        elapsed: wall time of the evaluation in seconds.
        n_unreachable_targets: targets that could not be recommended (in the history while
            ``exclude_seen``, or scored NaN); counted as misses.
        ranks: ``(n_users,)`` mean 0-based target rank (``greater + ties / 2``, +inf for
            unreachable), single-target sets only.
        recommendations: ``(n_users, max(ks))`` top item indices, -1 padded, if kept.

    Per-user values are NaN only for list metrics (AvgPop, Novelty) of users added by
    `with_misses`; means and intervals skip them.
    """

    model: str
    split: str
    n_users: int
    n_items: int
    ks: tuple[int, ...]
    users: IntArray
    per_user: dict[str, F64]
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    confidence: float
    ci_method: str
    exclude_seen: bool
    elapsed: float
    n_unreachable_targets: int = 0
    ranks: F64 | None = field(default=None, repr=False)
    recommendations: IntArray | None = field(default=None, repr=False)
    n_resamples: int = 1000
    seed: int = 0

    @property
    def seconds(self) -> float:
        """Wall time of the evaluation in seconds (same as ``elapsed``)."""
        return self.elapsed

    def with_misses(self, n: int, users: IntArray | None = None) -> EvaluationResult:
        """A copy with ``n`` more users whose targets could not be ranked at all.

        For users dropped before evaluation (e.g. every target unknown to the model's
        vocabulary), so that they still count: accuracy metrics (HR, NDCG, MRR, Recall,
        Precision) get 0, list metrics (AvgPop, Novelty) get NaN (no list was made; their means
        skip them), ranks +inf, recommendations -1. Means and intervals are recomputed.

        Args:
            n: number of users to add.
            users: ``(n,)`` their user indices (default: -1, unknown).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return self
        extra = (
            np.full(n, UNKNOWN, dtype=np.int64)
            if users is None
            else np.asarray(users, dtype=np.int64).reshape(-1)
        )
        if len(extra) != n:
            raise ValueError(f"with_misses: {n} users to add but {len(extra)} user indices given")
        per_user = {
            label: np.concatenate(
                [
                    v,
                    np.zeros(n)
                    if M.parse_label(label)[0] in ACCURACY_METRICS
                    else np.full(n, np.nan),
                ]
            )
            for label, v in self.per_user.items()
        }
        metrics = dict(self.metrics)
        metrics.update({label: _mean(v) for label, v in per_user.items()})
        ci = {
            label: confidence_interval(
                v, self.confidence, self.ci_method, self.n_resamples, self.seed
            )
            for label, v in per_user.items()
        }
        recs = self.recommendations
        if recs is not None:
            recs = np.concatenate([recs, np.full((n, recs.shape[1]), UNKNOWN, dtype=np.int64)])
        return replace(
            self,
            n_users=self.n_users + n,
            users=np.concatenate([self.users, extra]),
            per_user=per_user,
            metrics=metrics,
            ci=ci,
            n_unreachable_targets=self.n_unreachable_targets + n,
            ranks=None if self.ranks is None else np.concatenate([self.ranks, np.full(n, np.inf)]),
            recommendations=recs,
        )

    def __getitem__(self, label: str) -> float:
        """Mean of a metric: ``result["NDCG@10"]``."""
        try:
            return self.metrics[label]
        except KeyError:
            raise KeyError(f"no metric {label!r}; available: {list(self.metrics)}") from None

    def to_dict(self, per_user: bool = False, recommendations: bool = False) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf become None).

        Args:
            per_user: include the per-user values and user indices (large).
            recommendations: include the top-k lists (large).
        """
        out: dict[str, Any] = {
            "model": self.model,
            "split": self.split,
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "ks": [int(k) for k in self.ks],
            "exclude_seen": bool(self.exclude_seen),
            "confidence": float(self.confidence),
            "ci_method": self.ci_method,
            "elapsed_s": float(self.elapsed),
            "n_unreachable_targets": int(self.n_unreachable_targets),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "ci": {k: [_json_float(lo), _json_float(hi)] for k, (lo, hi) in self.ci.items()},
        }
        if per_user:
            out["users"] = [int(u) for u in self.users]
            out["per_user"] = {
                k: [_json_float(x) for x in v.tolist()] for k, v in self.per_user.items()
            }
        if recommendations and self.recommendations is not None:
            out["recommendations"] = self.recommendations.tolist()
        return out


# -- evaluator ------------------------------------------------------------------------------------
class Evaluator:
    """Full-ranking evaluator (see the module docstring for the protocol).

    Args:
        config: cut-offs, history exclusion, batch size, confidence (defaults if None).
        ci_method: ``"normal"`` (mean ± z·sd/√n) or ``"bootstrap"`` (percentile bootstrap).
        n_resamples: bootstrap replicates.
        seed: bootstrap seed.
        keep_recommendations: keep the ``(n_users, max(ks))`` top lists in the result.
        show_progress: force the progress bar on/off (default: `recpilot.progress` decides).
    """

    def __init__(
        self,
        config: EvaluationConfig | None = None,
        *,
        ci_method: Literal["normal", "bootstrap"] = "normal",
        n_resamples: int = 1000,
        seed: int = 0,
        keep_recommendations: bool = True,
        show_progress: bool | None = None,
    ) -> None:
        if ci_method not in ("normal", "bootstrap"):
            raise ValueError(f"ci_method must be 'normal' or 'bootstrap', got {ci_method!r}")
        self.config = config if config is not None else EvaluationConfig()
        self.ci_method = ci_method
        self.n_resamples = n_resamples
        self.seed = seed
        self.keep_recommendations = keep_recommendations
        self.show_progress = show_progress

    def evaluate(
        self,
        model: Recommender,
        eval_set: EvalSet,
        train: Interactions | None = None,
    ) -> EvaluationResult:
        """Rank the whole catalogue for every user of ``eval_set`` and score the targets.

        Args:
            model: a fitted recommender.
            eval_set: users, their visible histories and their targets.
            train: the training interactions; gives item popularity for AvgPop@k and
                Novelty@k (omitted without it, or when its item vocabulary is not the model's).

        Returns:
            An `EvaluationResult` with per-user values, means and confidence intervals.

        Raises:
            ValueError: on an empty evaluation set, a user without target, or targets outside
                the model's catalogue.
        """
        start_time = time.perf_counter()
        cfg = self.config
        ks = tuple(sorted(set(cfg.ks)))
        k_max = ks[-1]
        n = len(eval_set)
        if n == 0:
            raise ValueError(f"evaluation set {eval_set.name!r} holds no users")
        n_items = model.n_items
        self._check_targets(eval_set, n_items)
        popularity = None
        if train is not None:
            if train.n_items != n_items or (
                model.items_ is not None and train.items != model.items_
            ):
                logger.warning(
                    "train's item vocabulary (%d items) is not the model's (%d items): "
                    "AvgPop@k and Novelty@k are skipped",
                    train.n_items,
                    n_items,
                )
            else:
                popularity = train.item_counts().astype(np.float64)
        single = eval_set.single_target
        batch_size = cfg.batch_size
        model_name = str(getattr(model, "name", type(model).__name__))

        buffer = torch.empty((min(batch_size, n), n_items), dtype=torch.float32)  # (B, I)
        recs = np.empty((n, k_max), dtype=np.int64)
        greater = np.empty(n) if single else None
        ties = np.empty(n) if single else None
        hits = np.empty((n, k_max), dtype=bool) if not single else None
        n_relevant = np.empty(n) if not single else None
        n_unreachable = 0

        starts = range(0, n, batch_size)
        for lo in progress(
            starts,
            desc=f"evaluate {model_name} ({eval_set.name})",
            total=len(starts),
            unit="batch",
            disable=None if self.show_progress is None else not self.show_progress,
        ):
            hi = min(n, lo + batch_size)
            histories = eval_set.histories[lo:hi]
            targets = eval_set.targets[lo:hi]
            times = None if eval_set.history_times is None else eval_set.history_times[lo:hi]
            types = (
                None
                if eval_set.history_event_types is None
                else eval_set.history_event_types[lo:hi]
            )
            query = Query(eval_set.users[lo:hi], histories, times, types)
            scores = self._score_into(model, query, buffer)
            rows, items = (
                history_pairs(histories, n_items)
                if cfg.exclude_seen
                else (np.empty(0, np.int64), np.empty(0, np.int64))
            )
            mask_items(scores, rows, items)
            recs[lo:hi] = top_k_ids(scores, k_max)
            if single:
                assert greater is not None and ties is not None
                tgt = np.fromiter((t[0] for t in targets), dtype=np.int64, count=hi - lo)
                n_masked = np.bincount(rows, minlength=hi - lo)
                g, m = target_ranks(scores, tgt, n_masked)
                if cfg.exclude_seen:
                    seen = _in_pairs(rows, items, tgt, n_items)
                    g[seen] = math.inf
                    m[seen] = 0.0
                n_unreachable += int(np.isinf(g).sum())
                greater[lo:hi], ties[lo:hi] = g, m
            else:
                assert hits is not None and n_relevant is not None
                t_rows, t_items = history_pairs(targets, n_items)
                n_relevant[lo:hi] = np.bincount(t_rows, minlength=hi - lo)
                hits[lo:hi] = hit_matrix(recs[lo:hi], targets, n_items)
                if cfg.exclude_seen:
                    n_unreachable += int(
                        np.isin(t_rows * n_items + t_items, rows * n_items + items).sum()
                    )

        per_user: dict[str, F64] = {}
        ranks = None
        if single:
            assert greater is not None and ties is not None
            for k in ks:
                per_user[M.metric_label(M.HR, k)] = M.hit_rate(greater, k, ties)
                per_user[M.metric_label(M.NDCG, k)] = M.ndcg(greater, k, ties)
            per_user[M.MRR] = M.mrr(greater, ties)
            ranks = greater + ties / 2.0
        else:
            assert hits is not None and n_relevant is not None
            for k in ks:
                per_user[M.metric_label(M.HR, k)] = M.hit_rate_at_k(hits, k)
                per_user[M.metric_label(M.NDCG, k)] = M.ndcg_at_k(hits, n_relevant, k)
                per_user[M.metric_label(M.RECALL, k)] = M.recall_at_k(hits, n_relevant, k)
                per_user[M.metric_label(M.PRECISION, k)] = M.precision_at_k(hits, k)
            per_user[M.metric_label(M.MRR, k_max)] = M.mrr_at_k(hits, k_max)
        if popularity is not None:
            prob = (popularity + 1.0) / (popularity.sum() + n_items)
            for k in ks:
                per_user[M.metric_label(M.AVG_POP, k)] = M.average_popularity(
                    recs[:, :k], popularity
                )
                per_user[M.metric_label(M.NOVELTY, k)] = M.novelty(recs[:, :k], prob)

        means = {label: float(v.mean()) for label, v in per_user.items()}
        for k in ks:
            means[M.metric_label(M.COVERAGE, k)] = M.coverage(recs[:, :k], n_items)
        ci = {
            label: confidence_interval(
                v, cfg.confidence, self.ci_method, self.n_resamples, self.seed
            )
            for label, v in per_user.items()
        }
        if n_unreachable:
            logger.warning(
                "%s on %s: %d target(s) could not be recommended (in the user's history with "
                "exclude_seen, or scored NaN) and count as misses",
                model_name,
                eval_set.name,
                n_unreachable,
            )
        elapsed = time.perf_counter() - start_time
        result = EvaluationResult(
            model=model_name,
            split=eval_set.name,
            n_users=n,
            n_items=n_items,
            ks=ks,
            users=np.asarray(eval_set.users, dtype=np.int64),
            per_user=per_user,
            metrics=means,
            ci=ci,
            confidence=cfg.confidence,
            ci_method=self.ci_method,
            exclude_seen=cfg.exclude_seen,
            elapsed=elapsed,
            n_unreachable_targets=n_unreachable,
            ranks=ranks,
            recommendations=recs if self.keep_recommendations else None,
            n_resamples=self.n_resamples,
            seed=self.seed,
        )
        logger.info(
            "%s on %s (%d users, %d items, %.2fs): %s",
            model_name,
            eval_set.name,
            n,
            n_items,
            elapsed,
            ", ".join(f"{k}={v:.4f}" for k, v in means.items()),
        )
        return result

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _check_targets(eval_set: EvalSet, n_items: int) -> None:
        for b, t in enumerate(eval_set.targets):
            if len(t) == 0:
                raise ValueError(
                    f"user {int(eval_set.users[b])} of {eval_set.name!r} has no target item"
                )
            if t.min() < 0 or t.max() >= n_items:
                raise ValueError(
                    f"user {int(eval_set.users[b])} of {eval_set.name!r} has a target outside the "
                    f"model's catalogue of {n_items} items: evaluate with the vocabulary the "
                    "model was fitted on"
                )

    @staticmethod
    def _score_into(model: Recommender, query: Query, buffer: torch.Tensor) -> torch.Tensor:
        """Score a batch into the reusable buffer; returns the ``(B, I)`` view."""
        b = len(query)
        out = buffer[:b]
        raw: Any = model.score(query)
        if tuple(raw.shape) != tuple(out.shape):
            raise RuntimeError(
                f"{type(model).__name__}.score returned shape {tuple(raw.shape)}, "
                f"expected {tuple(out.shape)}"
            )
        if isinstance(raw, torch.Tensor):
            out.copy_(raw)
        else:
            # copy through numpy: works for read-only arrays, never touches the model's array
            np.copyto(out.numpy(), np.asarray(raw), casting="same_kind")
        return out
