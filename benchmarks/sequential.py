"""Sequence models (SASRec, BERT4Rec, HSTU) on ML-1M and Amazon Beauty: a validation-selected
sweep, test read once per model, time-to-quality curves, and the BENCHMARKS.md section.

Protocol (issue 3): leave-one-out by time, full ranking over all items, history items
excluded; every run early-stops on validation NDCG@10; per (dataset, model) the run with the
best validation NDCG@10 is selected, and only that run's saved model reads the test split.

    # every frozen config in configs/<dataset>/<model>.yaml, one after another (CPU, 2 cores)
    python benchmarks/sequential.py sweep --grid frozen --out results/seq-cpu
    # the hyper-parameter grid on a GPU, 12 runs at a time, 3.3 minutes each
    python benchmarks/sequential.py sweep --grid search --device cuda --parallel 12 \\
        --minutes 3.3 --out results/seq-gpu
    # a tiny end-to-end check (2 epochs)
    python benchmarks/sequential.py sweep --grid smoke --out /tmp/seq-smoke
    # write the BENCHMARKS.md section (and the time-to-quality PNG) from one or more sweeps
    python benchmarks/sequential.py render results/seq-gpu [results/seq-cpu ...]

Each sweep directory holds ``runs.jsonl`` (one line per finished run, written as runs end, so
an interrupted sweep keeps what it finished), ``runs/<id>/`` (saved model, config, epoch log)
and ``sweep.json`` (the selection and the test metrics).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import json
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import (  # noqa: E402
    data_dir,
    git_commit,
    machine,
    peak_rss_mb,
    replace_section,
    today,
    versions,
)

DATASETS = {"ml-1m": "ML-1M", "amazon-beauty": "Amazon Beauty"}
MODELS = ("sasrec", "bert4rec", "hstu")

# Published rows the issue names (HR@10, NDCG@10), with their sources.
PUBLISHED: dict[str, list[tuple[str, float, float]]] = {
    "ml-1m": [
        ("SASRec+ full CE (Klenitskiy & Vasilev, RecSys 2023)", 0.3152, 0.1821),
        ("SASRec+ 3,000 negatives (same)", 0.3159, 0.1857),
        ("BERT4Rec (same)", 0.2843, 0.1537),
        ("HSTU-large (Zhai et al. 2024; raw 3,706-item version)", 0.3294, 0.1893),
    ],
    "amazon-beauty": [
        ("SASRec (as reported by BSARec, Shin et al. AAAI 2024)", 0.0605, 0.0318),
        ("SASRec+SS (Klenitskiy & Vasilev, RecSys 2023)", 0.0921, 0.0531),
        ("ICSRec (Qin et al. WSDM 2024)", 0.0959, 0.0578),
        ("BSARec (Shin et al. AAAI 2024)", 0.1008, 0.0611),
    ],
}
TARGETS = {"ml-1m": 0.195, "amazon-beauty": 0.062}


def _t(**training: Any) -> dict[str, Any]:
    return {"training": training}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Overrides of the frozen configs, per (dataset, model); the first entry is the frozen config.
# The configs move when a sweep selects a better one (configs/ml-1m/hstu.yaml took the winner of
# benchmarks/results/seq-gpu-hstu), so each results JSON records every run's full config.
SEARCH: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("ml-1m", "sasrec"): [
        {},
        _t(learning_rate=0.002),
        {"d_model": 128, "n_heads": 2, **_t(learning_rate=0.003)},
        {"d_model": 128, "n_layers": 3, "n_heads": 2, "dropout": 0.3, **_t(learning_rate=0.002)},
        {"d_model": 256, "n_heads": 4, "dropout": 0.3, **_t(learning_rate=0.001)},
        {"loss": "sampled", "n_negatives": 3000, **_t(learning_rate=0.003)},
        {"loss": "gbce", "n_negatives": 256, "gbce_t": 0.75, **_t(learning_rate=0.003)},
    ],
    ("ml-1m", "bert4rec"): [
        {},
        _t(learning_rate=0.003),
        {"d_model": 128, **_t(learning_rate=0.002)},
        {"d_model": 256, "n_layers": 4, "n_heads": 4, "dropout": 0.1, **_t(learning_rate=0.001)},
    ],
    ("ml-1m", "hstu"): [
        {},
        _t(learning_rate=0.003),
        {"d_model": 128, "n_heads": 2, **_t(learning_rate=0.003)},
        {"n_layers": 4, "n_heads": 2, **_t(learning_rate=0.002)},
        {"d_model": 128, "n_layers": 4, "n_heads": 4, **_t(learning_rate=0.001)},
    ],
    ("amazon-beauty", "sasrec"): [
        {},
        _t(learning_rate=0.003),
        {"d_model": 128, "n_heads": 2, **_t(learning_rate=0.001)},
        {"dropout": 0.3, **_t(learning_rate=0.002)},
    ],
    ("amazon-beauty", "bert4rec"): [
        {},
        {"mask_prob": 0.4, **_t(learning_rate=0.003)},
    ],
    ("amazon-beauty", "hstu"): [
        {},
        _t(learning_rate=0.003),
    ],
}


def grid(name: str, datasets: list[str], models: list[str]) -> list[dict[str, Any]]:
    """Run specs ``{"id", "dataset", "model", "overrides"}`` of a named grid."""
    specs: list[dict[str, Any]] = []
    for dataset in datasets:
        for model in models:
            if name == "search":
                variants = SEARCH.get((dataset, model), [{}])
            elif name == "frozen":
                variants = [{}]
            elif name == "smoke":
                variants = [_t(max_epochs=2), {"d_model": 32, **_t(max_epochs=2)}]
            else:
                raise SystemExit(f"unknown grid {name!r}: search, frozen or smoke")
            for i, overrides in enumerate(variants):
                specs.append(
                    {
                        "id": f"{dataset}-{model}-{i:02d}",
                        "dataset": dataset,
                        "model": model,
                        "overrides": overrides,
                    }
                )
    return specs


def _config(spec: dict[str, Any], extra: dict[str, Any]) -> Any:
    """The experiment config of a run: the frozen file, the spec's and the sweep's overrides."""
    from recpilot.config import ExperimentConfig, read_config_file

    path = REPO / "configs" / spec["dataset"] / f"{spec['model']}.yaml"
    raw = read_config_file(path)
    raw["model"] = _merge(_merge(raw["model"], spec["overrides"]), extra)
    raw["data"]["path"] = str(data_dir() / spec["dataset"])
    return ExperimentConfig.model_validate(raw)


def _cost(spec: dict[str, Any]) -> float:
    """A rough relative cost (for scheduling the biggest runs first)."""
    o = spec["overrides"]
    d = o.get("d_model", 64) / 64
    layers = o.get("n_layers", 2) / 2
    return d * d * layers * (3.0 if spec["dataset"] == "ml-1m" else 1.0)


def train_run(
    spec: dict[str, Any],
    out: str,
    device: str,
    minutes: float | None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train one run (in a worker process); save its model; return its record.

    ``deadline`` (``time.time()`` seconds): a run starting less than a minute before it is
    skipped; one starting earlier has its budget cut to end by it.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_dir = Path(out) / "runs" / spec["id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {**spec, "device": device}
    started = time.perf_counter()
    if deadline is not None:
        left = (deadline - time.time()) / 60
        if left < 1.0:
            record["error"] = "skipped: the sweep's deadline had come"
            return record
        minutes = min(minutes, left) if minutes is not None else left
    try:
        import torch

        from recpilot.pipeline import fit_model, prepare

        threads = 1 if device == "cuda" else 2
        torch.set_num_threads(threads)
        training: dict[str, Any] = {
            "device": device,
            "threads": threads,
            "show_progress": False,
            "log_path": str(run_dir / "epochs.jsonl"),
            "checkpoint_dir": None,
        }
        if minutes is not None:
            training["max_minutes"] = minutes
        cfg = _config(spec, {"training": training})
        (run_dir / "epochs.jsonl").unlink(missing_ok=True)
        (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
        prepared = prepare(cfg)
        model = fit_model(cfg, prepared, "train")
        result = model.training_
        model.save(run_dir / "model")
        record.update(
            config=cfg.model.model_dump(mode="json"),
            params=sum(p.numel() for p in model.module_.parameters()),
            epochs=result.epochs,
            best_epoch=result.best_epoch,
            best_validation=result.best_metric,
            validation=next(
                (r["validation"] for r in result.history if r["epoch"] == result.best_epoch),
                None,
            ),
            stopped=result.stopped,
            train_seconds=result.seconds,
            seconds_per_epoch=_median(
                [r["train_seconds"] for r in result.history if not r.get("partial")]
            ),
            curve=[
                [r["elapsed_seconds"], r["epoch"], r["validation"]["NDCG@10"]]
                for r in result.history
                if "validation" in r
            ],
            peak_rss_mb=peak_rss_mb(),
            peak_gpu_mb=(torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None),
        )
    except Exception:
        record["error"] = traceback.format_exc()
    record["wall_seconds"] = time.perf_counter() - started
    return record


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def select_and_test(out: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (dataset, model): the best-validation run, its test metrics (read once here)."""
    import numpy as np

    from recpilot.config import ExperimentConfig
    from recpilot.models.base import Query, Recommender
    from recpilot.pipeline import evaluate, prepare

    ok = [r for r in records if "error" not in r and r.get("best_validation") is not None]
    selected: dict[str, Any] = {}
    prepared_cache: dict[str, Any] = {}
    for dataset in sorted({r["dataset"] for r in ok}):
        for model in MODELS:
            runs = [r for r in ok if r["dataset"] == dataset and r["model"] == model]
            if not runs:
                continue
            best = max(runs, key=lambda r: r["best_validation"])
            run_dir = out / "runs" / best["id"]
            cfg = ExperimentConfig.model_validate_json((run_dir / "config.json").read_text())
            cfg.data.path = data_dir() / dataset
            if dataset not in prepared_cache:
                prepared_cache[dataset] = prepare(cfg)
            prepared = prepared_cache[dataset]
            fitted = Recommender.load(run_dir / "model")
            test = evaluate(fitted, cfg, prepared, "test")
            t0 = time.perf_counter()
            fitted.score(Query.for_users(prepared.data, np.arange(prepared.data.n_users)))
            score_all = time.perf_counter() - t0
            selected[f"{dataset}/{model}"] = {
                "run": best["id"],
                "candidates": len(runs),
                "test": {k: float(v) for k, v in test.metrics.items()},
                "test_ci": {k: [float(a), float(b)] for k, (a, b) in test.ci.items()},
                "n_users": test.n_users,
                "score_all_seconds": score_all,
            }
            print(
                f"{dataset}/{model}: selected {best['id']} (validation NDCG@10 "
                f"{best['best_validation']:.4f} of {len(runs)} runs) -> test NDCG@10 "
                f"{test.metrics['NDCG@10']:.4f}, HR@10 {test.metrics['HR@10']:.4f}",
                flush=True,
            )
    return selected


def sweep(args: argparse.Namespace) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    specs = grid(args.grid, args.datasets, args.models)
    done_ids: set[str] = set()
    records: list[dict[str, Any]] = []
    log_path = out / "runs.jsonl"
    if log_path.exists() and not args.restart:
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            if "error" not in rec:
                records.append(rec)
                done_ids.add(rec["id"])
    todo = sorted((s for s in specs if s["id"] not in done_ids), key=_cost, reverse=True)
    print(
        f"# sequential sweep {args.grid} on {args.device}: {len(todo)} runs to do "
        f"({len(done_ids)} already done), {args.parallel} at a time, "
        f"{args.minutes or 'config'} minutes each",
        flush=True,
    )
    started = time.perf_counter()
    deadline = time.time() + args.deadline * 60 if args.deadline is not None else None
    context = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.parallel, mp_context=context) as pool:
        futures = {
            pool.submit(train_run, s, str(out), args.device, args.minutes, deadline): s
            for s in todo
        }
        for future in cf.as_completed(futures):
            rec = future.result()
            records = [r for r in records if r["id"] != rec["id"]] + [rec]
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if "error" in rec:
                print(f"{rec['id']}: FAILED\n{rec['error']}", flush=True)
            else:
                print(
                    f"{rec['id']}: val NDCG@10 {rec['best_validation']:.4f} at epoch "
                    f"{rec['best_epoch']}/{rec['epochs']} ({rec['stopped']}), "
                    f"{rec['train_seconds']:.0f}s, {time.perf_counter() - started:.0f}s into the "
                    "sweep",
                    flush=True,
                )
    selected = select_and_test(out, records)
    payload = {
        "grid": args.grid,
        "device": args.device,
        "device_name": _device_name(args.device),
        "machine": machine(),
        "versions": versions(),
        "commit": git_commit(),
        "date": today(),
        "parallel": args.parallel,
        "minutes": args.minutes,
        "runs": records,
        "selected": selected,
        "sweep_seconds": time.perf_counter() - started,
    }
    (out / "sweep.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {out / 'sweep.json'} in {time.perf_counter() - started:.0f}s", flush=True)


def _device_name(device: str) -> str:
    if device != "cuda":
        return "CPU"
    import torch

    return torch.cuda.get_device_name(0)


# -- rendering -------------------------------------------------------------------------------------
def _ci(sel: dict[str, Any], key: str) -> str:
    value = sel["test"][key]
    lo, hi = sel["test_ci"][key]
    return f"{value:.4f} ± {(hi - lo) / 2:.4f}"


def _describe(cfg: dict[str, Any]) -> str:
    t = cfg["training"]
    extra = ""
    if cfg["loss"] != "full":
        extra = f", {cfg['loss']} loss with {cfg['n_negatives']} negatives"
    if cfg["name"] == "bert4rec":
        extra += f", mask {cfg['mask_prob']}"
    return (
        f"d={cfg['d_model']}, {cfg['n_layers']} layers, {cfg['n_heads']} heads, dropout "
        f"{cfg['dropout']}, lr {t['learning_rate']}{extra}"
    )


def plot_curves(sweeps: list[dict[str, Any]], path: Path) -> None:
    """Validation NDCG@10 against wall time of every selected run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [
        d for d in DATASETS if any(k.startswith(d + "/") for s in sweeps for k in s["selected"])
    ]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for s in sweeps:
            runs = {r["id"]: r for r in s["runs"]}
            for key, sel in s["selected"].items():
                if not key.startswith(dataset + "/"):
                    continue
                curve = runs[sel["run"]]["curve"]
                ax.plot(
                    [c[0] / 60 for c in curve],
                    [c[2] for c in curve],
                    label=f"{key.split('/')[1]} ({s['device_name']})",
                )
        ax.set_title(f"{DATASETS[dataset]}: time to quality")
        ax.set_xlabel("wall time (minutes)")
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(dirs: list[Path], plot: Path) -> str:
    sweeps = []
    for d in dirs:
        s = json.loads((d / "sweep.json").read_text())
        s["label"] = d.name
        sweeps.append(s)
    lines = [
        "## Sequence models on ML-1M and Amazon Beauty (issue 3)",
        "",
        "`python benchmarks/sequential.py` — protocol: leave-one-out by time, full ranking over "
        "all items, history items excluded; each run early-stops on validation NDCG@10; per "
        "(dataset, model, device) the run with the best validation NDCG@10 is selected and only "
        "its saved model reads the test split (95% normal intervals over users).",
        "",
    ]
    for s in sweeps:
        lines += [
            f"### `{s['label']}`: grid `{s['grid']}` on {s['device_name']} ({s['date']}, "
            f"commit {s['commit']})",
            "",
            f"Machine: {s['machine']}; {s['parallel']} runs at a time, "
            f"{s['minutes'] or 'the config'} minutes per run. Versions: {s['versions']}.",
            "",
        ]
        if s["device"] == "cuda" and s["parallel"] > 1:
            lines += [
                f"The {s['parallel']} concurrent runs shared one GPU (time-sliced), so seconds "
                "per epoch here measure that contention, not the speed of one run; runs stopped "
                "by `time_budget` were still improving.",
                "",
            ]
        lines += [
            "| dataset | model | selected run (of N) | HR@10 | NDCG@10 | MRR | epochs (best) | "
            "train min | s/epoch | params |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        runs = {r["id"]: r for r in s["runs"]}
        for key, sel in s["selected"].items():
            dataset, model = key.split("/")
            run = runs[sel["run"]]
            spe = run.get("seconds_per_epoch")
            lines.append(
                f"| {DATASETS[dataset]} | {model} | {sel['run']} ({sel['candidates']}) | "
                f"{_ci(sel, 'HR@10')} | {_ci(sel, 'NDCG@10')} | {_ci(sel, 'MRR')} | "
                f"{run['epochs']} ({run['best_epoch']}) | {run['train_seconds'] / 60:.1f} | "
                f"{'' if spe is None else f'{spe:.2f}'} | {run['params']:,} |"
            )
        lines += ["", "Every run (validation NDCG@10 of its best epoch; test not read):", ""]
        lines += ["| run | configuration | val NDCG@10 | epochs | stop |", "|---|---|---|---|---|"]
        for r in sorted(s["runs"], key=lambda r: r["id"]):
            if "error" in r:
                lines.append(f"| {r['id']} | failed | | | |")
                continue
            lines.append(
                f"| {r['id']} | {_describe(r['config'])} | {r['best_validation']:.4f} | "
                f"{r['epochs']} | {r['stopped']} |"
            )
        lines.append("")
    lines += ["### Published numbers (same data files as above)", ""]
    lines += ["| dataset | source | HR@10 | NDCG@10 |", "|---|---|---|---|"]
    for dataset, rows in PUBLISHED.items():
        for name, hr, ndcg in rows:
            lines.append(f"| {DATASETS[dataset]} | {name} | {hr:.4f} | {ndcg:.4f} |")
    lines += ["", "Targets (issue 3), best model per dataset, test NDCG@10:", ""]
    for dataset, target in TARGETS.items():
        best = [
            (sel["test"]["NDCG@10"], key, s["device_name"])
            for s in sweeps
            for key, sel in s["selected"].items()
            if key.startswith(dataset + "/")
        ]
        if best:
            value, key, dev = max(best)
            status = "met" if value >= target else "not met"
            lines.append(
                f"- {DATASETS[dataset]}: ≥ {target} — best {value:.4f} ({key.split('/')[1]}, "
                f"{dev}): {status}."
            )
    plot_curves(sweeps, plot)
    shown = plot.relative_to(REPO) if plot.is_relative_to(REPO) else plot
    lines += ["", f"Time-to-quality curves: `{shown}`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train a grid of runs, select on validation, test once")
    p.add_argument("--grid", default="frozen", help="frozen (default), search or smoke")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (processes)")
    p.add_argument("--minutes", type=float, help="time budget per run (default: the config's)")
    p.add_argument(
        "--deadline", type=float, help="minutes from the start by which all training ends"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--restart", action="store_true", help="ignore runs already in --out")
    r = sub.add_parser("render", help="write the BENCHMARKS.md section from sweep directories")
    r.add_argument("dirs", type=Path, nargs="+")
    r.add_argument(
        "--plot", type=Path, default=REPO / "benchmarks" / "results" / "sequential_ttq.png"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "sweep":
        sweep(args)
    else:
        body = render(args.dirs, args.plot)
        replace_section(REPO / "BENCHMARKS.md", "sequential", body)
        print(body)


if __name__ == "__main__":
    main()
