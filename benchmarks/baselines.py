"""Baselines on the public datasets: leave-one-out, full ranking, history excluded.

Every model's hyper-parameters are chosen on the VALIDATION split from a small grid; the chosen
setting is then refitted on train + validation and the test split is read once. Each
(dataset, model) runs in its own process so its peak memory is its own.

    python benchmarks/baselines.py                 # all datasets, writes BENCHMARKS.md
    python benchmarks/baselines.py --datasets ml-100k --no-write
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    data_dir,
    git_commit,
    machine,
    peak_rss_mb,
    replace_section,
    today,
    versions,
)

DATASETS: dict[str, dict[str, Any]] = {
    "ml-1m": {"path": "ml-1m", "format": "sequence-lines"},
    "ml-100k": {"path": "ml-100k", "format": "movielens-100k"},
    "amazon-beauty": {"path": "amazon-beauty", "format": "sequence-lines"},
    "ml-latest-small": {"path": "ml-latest-small", "format": "movielens-latest"},
}

GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}],
    "itemknn": [{"neighbours": n} for n in (50, 200, 1000)],
    "ease": [{"l2": v} for v in (100.0, 300.0, 1000.0, 3000.0)],
    "als": [
        {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
        for f in (64, 128)
        for r in (0.05, 1.0)
        for a in (5.0, 20.0)
    ],
}

# Published numbers on the same files (../shared/ANCHORS.md), for the side-by-side table.
PUBLISHED = {
    "ml-1m": [
        ("SASRec, original BCE (Klenitskiy & Vasilev 2023)", 0.2500, 0.1341),
        ("BERT4Rec (same)", 0.2843, 0.1537),
        ("SASRec+ full cross-entropy (same)", 0.3152, 0.1821),
    ],
    "ml-100k": [
        ("EASE λ=300, this machine kind (ANCHORS.md)", 0.140, 0.073),
        ("plain SASRec, 8 min, this machine kind (ANCHORS.md)", 0.191, 0.094),
    ],
    "amazon-beauty": [
        ("SASRec (S3-Rec all-rank table)", 0.0605, 0.0318),
        ("SASRec + sampled softmax (transformer_benchmark)", 0.0921, 0.0531),
    ],
}


def run_one(dataset: str, model: str, queue: Any) -> None:
    """Child process: grid on validation, refit, test once; report metrics, times, peak RSS."""
    import torch

    from recpilot.config import ExperimentConfig
    from recpilot.pipeline import evaluate, fit_model, prepare

    torch.set_num_threads(2)
    spec = DATASETS[dataset]
    base = ExperimentConfig.model_validate(
        {
            "data": {"path": str(data_dir() / spec["path"]), "format": spec["format"]},
            "model": {"name": model},
            "evaluation": {"ks": [10, 20]},
        }
    )
    t0 = time.perf_counter()
    prepared = prepare(base)
    prep_s = time.perf_counter() - t0
    trials = []
    for params in GRIDS[model]:
        cfg = base.model_copy(update={"model": base.model.model_copy(update=params)})
        t = time.perf_counter()
        fitted = fit_model(cfg, prepared, "train")
        fit_s = time.perf_counter() - t
        val = evaluate(fitted, cfg, prepared, "validation")
        trials.append({"params": params, "val_ndcg10": val.metrics["NDCG@10"], "fit_s": fit_s})
    best = max(trials, key=lambda t: t["val_ndcg10"])
    cfg = base.model_copy(update={"model": base.model.model_copy(update=best["params"])})
    t = time.perf_counter()
    fitted = fit_model(cfg, prepared, "train_validation")
    fit_s = time.perf_counter() - t
    test = evaluate(fitted, cfg, prepared, "test")
    queue.put(
        {
            "dataset": dataset,
            "model": model,
            "params": best["params"],
            "val_ndcg10": best["val_ndcg10"],
            "trials": trials,
            "test": {k: float(v) for k, v in test.metrics.items()},
            "ci": {k: [float(a), float(b)] for k, (a, b) in test.ci.items()},
            "n_users": prepared.data.n_users,
            "n_items": prepared.data.n_items,
            "n_events": prepared.data.n_events,
            "n_test_users": test.n_users,
            "prepare_s": prep_s,
            "fit_s": fit_s,
            "eval_s": test.seconds,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def fmt_ci(row: dict[str, Any], key: str) -> str:
    lo, hi = row["ci"][key]
    return f"{row['test'][key]:.4f} ± {(hi - lo) / 2:.4f}"


def render(results: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "## Baselines (issue 2): leave-one-out, full ranking, history excluded",
        "",
        f"Run {today()} with `python benchmarks/baselines.py` (commit {git_commit()}), {seconds / 60:.1f} min in all.",
        f"Machine: {machine()}. Versions: {versions()}. Seeds: 0 (ALS), splits deterministic.",
        "",
        "Protocol: last event per user = test, second last = validation; hyper-parameters picked on "
        "validation NDCG@10 from the grid in the script, then the model is refitted on train + "
        "validation and the test split is read once. Metrics are means over test users with 95% "
        "normal confidence half-widths. Tied scores count at their expected value over a random order. Times are this machine's wall "
        "clock; peak RSS is the whole process (data + model).",
        "",
    ]
    for dataset in DATASETS:
        rows = [r for r in results if r["dataset"] == dataset]
        if not rows:
            continue
        r0 = rows[0]
        lines += [
            f"### {dataset} ({r0['n_users']:,} users, {r0['n_items']:,} items, {r0['n_events']:,} events; "
            f"{r0['n_test_users']:,} test users)",
            "",
            "| model | chosen setting | val NDCG@10 | test HR@10 | test NDCG@10 | test MRR | fit s | eval s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            setting = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "–"
            lines.append(
                f"| {r['model']} | {setting} | {r['val_ndcg10']:.4f} | {fmt_ci(r, 'HR@10')} | "
                f"{fmt_ci(r, 'NDCG@10')} | {fmt_ci(r, 'MRR')} | {r['fit_s']:.1f} | {r['eval_s']:.1f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
        for name, hr, ndcg in PUBLISHED.get(dataset, []):
            lines.append(f"| *published:* {name} | | | {hr:.4f} | {ndcg:.4f} | | | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--models", nargs="*", default=list(GRIDS))
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone"
    )
    parser.add_argument("--json", type=Path, help="also write raw results here")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    results = []
    start = time.perf_counter()
    for dataset in args.datasets:
        if not (data_dir() / DATASETS[dataset]["path"]).exists():
            print(f"skip {dataset}: not found under {data_dir()}")
            continue
        for model in args.models:
            queue = ctx.Queue()
            proc = ctx.Process(target=run_one, args=(dataset, model, queue))
            proc.start()
            row = queue.get()
            proc.join()
            results.append(row)
            print(
                f"{dataset:16s} {model:11s} test HR@10 {row['test']['HR@10']:.4f} NDCG@10 "
                f"{row['test']['NDCG@10']:.4f} MRR {row['test']['MRR']:.4f} | {row['params']} | "
                f"fit {row['fit_s']:.1f}s eval {row['eval_s']:.1f}s peak {row['peak_rss_mb']:.0f} MiB",
                flush=True,
            )
    seconds = time.perf_counter() - start
    text = render(results, seconds)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.no_write:
        replace_section(REPO / "BENCHMARKS.md", "baselines", text)


if __name__ == "__main__":
    main()
