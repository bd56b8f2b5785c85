"""Metrics, bootstrap confidence intervals, plots and an HTML page for behaviour models.

Metrics come from `recpilot.evaluation.metrics` (AUC, per-user AUC, log-loss, accuracy,
precision/recall/F1 at a stated threshold, ECE). Confidence intervals are a paired
percentile bootstrap over examples: the same resampled rows score every model, so the
interval of a *difference* between two models is meaningful too. Plots (ROC, precision-recall,
reliability) are PNGs drawn with matplotlib's Agg back end.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recpilot.evaluation.metrics import (
    accuracy,
    expected_calibration_error,
    grouped_auc,
    log_loss,
    precision_recall_f1,
    reliability_curve,
    roc_auc,
)
from recpilot.progress import progress

F64 = npt.NDArray[np.float64]


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    try:
        return float(fn(*args, **kwargs))
    except ValueError:
        return math.nan


def behaviour_metrics(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    users: npt.ArrayLike | None = None,
    threshold: float = 0.5,
    ece_bins: int = 15,
) -> dict[str, float]:
    """Every metric of one behaviour's predictions.

    Args:
        y: ``(N,)`` 0/1 labels.
        p: ``(N,)`` probabilities.
        users: ``(N,)`` user keys for the per-user AUC (mean over users with both classes).
        threshold: decision threshold of accuracy, precision, recall and F1.
        ece_bins: bins of the expected calibration error.

    Returns:
        ``auc``, ``user_auc``, ``log_loss``, ``accuracy``, ``precision``, ``recall``, ``f1``,
        ``ece``, ``positive_rate``, ``mean_probability``, ``n``, ``threshold``.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    prf = precision_recall_f1(y, p, threshold) if len(y) else {}
    return {
        "auc": _safe(roc_auc, y, p),
        "user_auc": _safe(grouped_auc, y, p, users, weighting="uniform")
        if users is not None
        else math.nan,
        "log_loss": _safe(log_loss, y, p),
        "accuracy": _safe(accuracy, y, p, threshold),
        "precision": float(prf.get("precision", math.nan)),
        "recall": float(prf.get("recall", math.nan)),
        "f1": float(prf.get("f1", math.nan)),
        "ece": _safe(expected_calibration_error, y, p, ece_bins),
        "positive_rate": float(y.mean()) if len(y) else math.nan,
        "mean_probability": float(p.mean()) if len(p) else math.nan,
        "n": float(len(y)),
        "threshold": float(threshold),
    }


def _auc_fast(y: npt.NDArray[np.bool_], p: F64) -> float:
    """Mann-Whitney AUC with average ranks of ties (one sort)."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(p, method="average")
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ll_rows(y: F64, p: F64) -> F64:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return np.asarray(-(y * np.log(q) + (1 - y) * np.log1p(-q)), dtype=np.float64)


def paired_bootstrap(
    y: npt.ArrayLike,
    probs: Mapping[str, npt.ArrayLike],
    reference: str | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile bootstrap intervals of AUC and log-loss, paired across models.

    Args:
        y: ``(N,)`` 0/1 labels.
        probs: model name → ``(N,)`` probabilities.
        reference: a model name; intervals of ``model - reference`` are added as
            ``auc_diff`` and ``log_loss_diff``.
        n_resamples: bootstrap replicates.
        confidence: interval coverage.
        seed: resampling seed.

    Returns:
        model → ``{"auc": (low, high), "log_loss": (low, high)[, "auc_diff": ...,
        "log_loss_diff": ...]}``.
    """
    yy = np.asarray(y, dtype=np.float64)
    pp = {k: np.asarray(v, dtype=np.float64) for k, v in probs.items()}
    rng = np.random.default_rng(seed)
    n = len(yy)
    aucs = {k: np.empty(n_resamples) for k in pp}
    lls = {k: np.empty(n_resamples) for k in pp}
    row_ll = {k: _ll_rows(yy, v) for k, v in pp.items()}
    for r in progress(range(n_resamples), desc="bootstrap", unit="resample"):
        idx = rng.integers(0, n, size=n)
        yb = yy[idx] > 0.5
        for k, v in pp.items():
            aucs[k][r] = _auc_fast(yb, v[idx])
            lls[k][r] = row_ll[k][idx].mean()
    alpha = (1 - confidence) / 2

    def interval(x: F64) -> tuple[float, float]:
        x = x[np.isfinite(x)]
        if not len(x):
            return (math.nan, math.nan)
        lo, hi = np.quantile(x, [alpha, 1 - alpha])
        return (float(lo), float(hi))

    out: dict[str, dict[str, tuple[float, float]]] = {}
    for k in pp:
        out[k] = {"auc": interval(aucs[k]), "log_loss": interval(lls[k])}
        if reference is not None and reference in pp and k != reference:
            out[k]["auc_diff"] = interval(aucs[k] - aucs[reference])
            out[k]["log_loss_diff"] = interval(lls[k] - lls[reference])
    return out


# -- plots ----------------------------------------------------------------------------------------
def plot_curves(
    path: Path,
    behaviour: str,
    y: npt.ArrayLike,
    probs: Mapping[str, npt.ArrayLike],
    n_bins: int = 15,
) -> dict[str, str]:
    """Write ROC, precision-recall and reliability PNGs of one behaviour for every model.

    Returns:
        kind (``roc``, ``pr``, ``reliability``) → file name inside ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    path.mkdir(parents=True, exist_ok=True)
    yy = np.asarray(y, dtype=np.float64)
    files: dict[str, str] = {}
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in behaviour)

    if len(np.unique(yy)) == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, p in probs.items():
            fpr, tpr, _ = roc_curve(yy, np.asarray(p))
            ax.plot(fpr, tpr, label=f"{name} (AUC {_safe(roc_auc, yy, p):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {behaviour}")
        ax.legend(loc="lower right", fontsize=8)
        files["roc"] = f"roc_{safe}.png"
        fig.savefig(path / files["roc"], dpi=100, bbox_inches="tight")
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5, 5))
        for name, p in probs.items():
            prec, rec, _ = precision_recall_curve(yy, np.asarray(p))
            ax.plot(rec, prec, label=name)
        ax.axhline(yy.mean(), color="k", ls=":", lw=1, label="base rate")
        ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {behaviour}")
        ax.legend(loc="upper right", fontsize=8)
        files["pr"] = f"pr_{safe}.png"
        fig.savefig(path / files["pr"], dpi=100, bbox_inches="tight")
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in probs.items():
        curve = reliability_curve(yy, np.clip(np.asarray(p, dtype=np.float64), 0, 1), n_bins)
        ok = curve.counts > 0
        ece = _safe(expected_calibration_error, yy, np.clip(np.asarray(p), 0, 1), n_bins)
        ax.plot(
            curve.mean_predicted[ok],
            curve.fraction_positive[ok],
            "o-",
            ms=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        title=f"Reliability: {behaviour}",
    )
    ax.legend(loc="upper left", fontsize=8)
    files["reliability"] = f"reliability_{safe}.png"
    fig.savefig(path / files["reliability"], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return files


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.4f}"
    if isinstance(x, (list, tuple)) and len(x) == 2:
        return f"[{_fmt(x[0])}, {_fmt(x[1])}]"
    return html.escape(str(x))


def write_report(
    path: Path,
    title: str,
    results: Mapping[str, Any],
    images: Mapping[str, Mapping[str, str]],
) -> Path:
    """Write ``report.json`` and an ``index.html`` with the tables and the plots.

    Args:
        path: output directory.
        title: page title.
        results: ``{"metrics": {behaviour: {model: {metric: value}}}, "ci": ..., ...}``;
            written as JSON as given.
        images: behaviour → kind → PNG file name (from `plot_curves`).
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps(results, indent=2, default=str))
    cols = ["auc", "user_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "img{width:380px;margin:4px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for key in ("data", "protocol"):
        if key in results:
            parts.append(
                f"<pre>{html.escape(json.dumps(results[key], indent=2, default=str))}</pre>"
            )
    metrics = results.get("metrics", {})
    cis = results.get("ci", {})
    for behaviour, by_model in metrics.items():
        parts.append(f"<h2>{html.escape(behaviour)}</h2><table><tr><th>model</th>")
        parts += [f"<th>{c}</th>" for c in cols] + [
            "<th>AUC 95% CI</th><th>log-loss 95% CI</th></tr>"
        ]
        for model, m in by_model.items():
            ci = cis.get(behaviour, {}).get(model, {})
            parts.append(f"<tr><td>{html.escape(model)}</td>")
            parts += [f"<td>{_fmt(m.get(c, math.nan))}</td>" for c in cols]
            parts.append(
                f"<td>{_fmt(ci.get('auc', ''))}</td><td>{_fmt(ci.get('log_loss', ''))}</td></tr>"
            )
        parts.append("</table><div>")
        for kind, file in images.get(behaviour, {}).items():
            parts.append(f"<img src='{html.escape(file)}' alt='{kind} {html.escape(behaviour)}'>")
        parts.append("</div>")
    parts.append("</body></html>")
    out = path / "index.html"
    out.write_text("\n".join(parts))
    return out
