"""SASRec on MovieLens-1M: seconds per epoch, FLOP efficiency, time-to-quality, test metrics.

Trains with ``configs/ml-1m/sasrec.yaml`` on the leave-one-out train split, early stopping on
validation NDCG@10, then reads the test split once with the selected model.

    python benchmarks/sasrec_ml1m.py --max-minutes 10
    python benchmarks/sasrec_ml1m.py --profile 20        # profile 20 training steps, no training
    python benchmarks/sasrec_ml1m.py --time-epochs 2 --precision bf16   # epoch timing only

FLOPs are counted from the actual batch shapes (fwd + bwd = 3 × forward): every padded slot the
model computes on ("computed"), only real positions ("useful"), and the ANCHORS.md convention
(every user padded to max_len, all positions: about 2.4 TFLOP per epoch), each divided by the
measured seconds per epoch and compared with the 175 GFLOP/s fp32 GEMM rate of this machine kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
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

from recpilot.config import ExperimentConfig, SASRecConfig, load_config
from recpilot.models.base import Query
from recpilot.models.sequential import SASRecRecommender, make_loss, sequence_loss
from recpilot.pipeline import Prepared, evaluate, fit_model, prepare
from recpilot.training.batching import SequenceBatcher

FP32_GFLOPS = 175.0  # ANCHORS.md: torch GEMM 2048², 2 cores, fp32
BF16_GFLOPS = 395.0
ANCHOR_EPOCH_S = 52.0  # ANCHORS.md: plain SASRec, same sizes, fp32


def epoch_flops(batcher: SequenceBatcher, cfg: SASRecConfig, n_items: int) -> dict[str, float]:
    """Training FLOPs of one epoch (forward + backward ≈ 3 × forward).

    Per position and layer: QKV and output projections ``8 D²`` and the feed-forward
    ``4 D D_ff``; causal attention ``2 L D`` (scores and weighted values, half the square);
    the head ``2 D I`` at positions with a target only.
    """
    d = cfg.d_model
    d_ff = cfg.d_ff or 4 * d
    per_token = cfg.n_layers * (8 * d * d + 4 * d * d_ff)
    head = 2 * d * n_items
    lengths = batcher.lengths.astype(np.float64)
    useful = float((lengths * per_token + cfg.n_layers * 2 * lengths**2 * d + lengths * head).sum())
    computed = 0.0
    for rows in batcher.order(np.random.default_rng(0)):
        width = float(batcher.lengths[rows].max())
        b = len(rows)
        computed += b * width * per_token + cfg.n_layers * 2 * b * width**2 * d
        computed += float(batcher.lengths[rows].sum()) * head
    n_users = batcher.n_sequences
    L = cfg.max_len
    anchor = n_users * L * (per_token + head) + cfg.n_layers * 2 * n_users * L * L * d
    return {"useful": 3 * useful, "computed": 3 * computed, "anchor": 3 * anchor}


def load(args: argparse.Namespace) -> tuple[ExperimentConfig, Prepared]:
    cfg = load_config(args.config)
    cfg.data.path = data_dir() / "ml-1m"
    assert isinstance(cfg.model, SASRecConfig)
    training = cfg.model.training.model_copy(
        update={
            k: v
            for k, v in {
                "max_minutes": args.max_minutes,
                "max_epochs": args.max_epochs,
                "precision": args.precision,
                "threads": args.threads,
                "log_path": args.log,
                "batch_size": args.batch_size,
            }.items()
            if v is not None
        }
    )
    update: dict[str, Any] = {"training": training}
    if args.head_precision is not None:
        update["head_precision"] = args.head_precision
    cfg.model = cfg.model.model_copy(update=update)
    return cfg, prepare(cfg)


def profile(cfg: SASRecConfig, prepared: Prepared, steps: int, shapes: bool = False) -> None:
    """Profile ``steps`` training steps (after 3 warm-up steps) and print the top operators."""
    model = SASRecRecommender(cfg)
    data = prepared.split.train
    module = model._build_module(data.n_items).train()
    batcher = SequenceBatcher(data, cfg.max_len, cfg.training.batch_size, 32)
    loss_fn = make_loss(cfg, data)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=True)
    batches = list(batcher.epoch(np.random.default_rng(0)))[: steps + 3]
    bf16 = cfg.training.precision == "bf16"

    def step(batch: Any) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = sequence_loss(module, loss_fn, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0, foreach=True)
        opt.step()

    for batch in batches[:3]:
        step(batch)
    t0 = time.perf_counter()
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=shapes
    ) as prof:
        for batch in batches[3:]:
            step(batch)
    seconds = time.perf_counter() - t0
    seqs = sum(len(b) for b in batches[3:])
    print(
        f"{steps} steps, {seqs} sequences in {seconds:.2f}s (profiled): {seqs / seconds:.0f} seq/s"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if shapes:
        print(
            prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=30
            )
        )


PUBLISHED = [
    ("plain SASRec, this machine kind, 35 min (ANCHORS.md)", 0.2937, 0.1665),
    ("SASRec, original BCE (Klenitskiy & Vasilev 2023)", 0.2500, 0.1341),
    ("BERT4Rec (same)", 0.2843, 0.1537),
    ("SASRec+ full cross-entropy (same)", 0.3152, 0.1821),
    ("SASRec+ 3,000 negatives (same)", 0.3159, 0.1857),
    ("HSTU-large (generative-recommenders; raw 3,706-item version)", 0.3294, 0.1893),
]


def render(payload: dict[str, Any], command: str, note: str = "") -> str:
    """The BENCHMARKS.md section for one run's results JSON."""
    history = payload["history"]
    full = [r["train_seconds"] for r in history if not r.get("partial")]
    flops = payload["flops_per_epoch"]
    sec = payload["seconds_per_epoch"]
    test, ci = payload["test"], payload["test_ci"]
    model = payload["config"]["model"]
    training = model["training"]

    def with_ci(key: str) -> str:
        lo, hi = ci[key]
        return f"{test[key]:.4f} ± {(hi - lo) / 2:.4f}"

    lines = [
        "## SASRec on ML-1M (issue 3, first model): speed and time to quality",
        "",
        f"Run {today()} with `{command}` (commit {payload['commit']}).",
        f"Machine: {payload['machine']}. Versions: {payload['versions']}. Seed {model['seed']}.",
        "",
        f"Model: SASRec, d={model['d_model']}, {model['n_layers']} layers, {model['n_heads']} head(s), "
        f"max length {model['max_len']}, dropout {model['dropout']}, loss `{model['loss']}` (full "
        f"softmax over all 3,416 items at every position), AdamW lr {training['learning_rate']} "
        f"(chosen on validation), batch {training['batch_size']}, head matrix products "
        f"`{model['head_precision']}`. Protocol: leave-one-out, full ranking, history excluded; early "
        "stopping on validation NDCG@10; the test split read once with the best-validation model.",
        "",
    ]
    if note:
        lines += [note, ""]
    lines += [
        "| measure | value |",
        "|---|---|",
        f"| seconds per epoch, training only (median of {len(full)} full epochs; fastest) | "
        f"{sec:.2f} s; {min(full):.2f} s |",
        "| ANCHORS.md plain SASRec on this machine kind | 52 s per epoch |",
        f"| FLOPs per epoch: useful / computed / ANCHORS.md convention | {flops['useful'] / 1e12:.2f} / "
        f"{flops['computed'] / 1e12:.2f} / {flops['anchor'] / 1e12:.2f} TFLOP |",
        f"| useful GFLOP/s at the median epoch (vs 175 fp32 peak) | {flops['useful'] / sec / 1e9:.0f} "
        f"({flops['useful'] / sec / 1e9 / 175:.0%}) |",
        f"| validation pass per epoch | {payload['validation_seconds']:.2f} s |",
        f"| epochs, stop reason, best epoch | {len(history)}, {payload['stopped']}, {payload['best_epoch']} |",
        f"| scoring all 6,040 users × 3,416 items | {payload['score_all_seconds']:.2f} s (target ≤ 10 s) |",
        f"| peak RSS | {payload['peak_rss_mb']:.0f} MiB |",
        "",
        "Time to quality (validation NDCG@10; every epoch that set a new best):",
        "",
        "| epoch | wall min | val NDCG@10 | val HR@10 |",
        "|---|---|---|---|",
    ]
    best = -1.0
    for r in history:
        v = r.get("validation", {})
        if v.get("NDCG@10", -1) > best:
            best = v["NDCG@10"]
            lines.append(
                f"| {r['epoch']} | {r['elapsed_seconds'] / 60:.1f} | {v['NDCG@10']:.4f} | {v['HR@10']:.4f} |"
            )
    lines += [
        "",
        "| test (read once) | HR@10 | NDCG@10 | MRR | HR@20 | NDCG@20 |",
        "|---|---|---|---|---|---|",
        f"| RecPilot SASRec | {with_ci('HR@10')} | {with_ci('NDCG@10')} | {with_ci('MRR')} | "
        f"{with_ci('HR@20')} | {with_ci('NDCG@20')} |",
    ]
    for name, hr, ndcg in PUBLISHED:
        lines.append(f"| *published:* {name} | {hr:.4f} | {ndcg:.4f} | | | |")
    target = 0.195
    status = "reached" if test["NDCG@10"] >= target else "not reached yet"
    lines += [
        "",
        f"Issue 3 target for the best ML-1M model: test NDCG@10 ≥ {target} — {status}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "ml-1m" / "sasrec.yaml")
    parser.add_argument("--max-minutes", type=float, help="training time budget")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="whole-model autocast")
    parser.add_argument("--head-precision", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flush-denormal", action="store_true")
    parser.add_argument("--log", type=Path, help="per-epoch JSONL log")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    parser.add_argument("--profile", type=int, metavar="STEPS", help="profile steps and exit")
    parser.add_argument("--shapes", action="store_true", help="profile: group by input shapes")
    parser.add_argument(
        "--time-epochs", type=int, metavar="N", help="time N epochs without validation and exit"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="write BENCHMARKS.md from a results JSON and exit",
    )
    parser.add_argument(
        "--command", default="python benchmarks/sasrec_ml1m.py", help="for --render"
    )
    parser.add_argument("--note", default="", help="for --render: a remark on the run's conditions")
    args = parser.parse_args()
    if args.render is not None:
        payload = json.loads(args.render.read_text())
        replace_section(
            REPO / "BENCHMARKS.md", "sasrec-ml1m", render(payload, args.command, args.note)
        )
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)

    started = time.perf_counter()
    cfg, prepared = load(args)
    model_cfg = cfg.model
    assert isinstance(model_cfg, SASRecConfig)
    data = prepared.split.train
    print(f"# SASRec on ML-1M — {today()}, commit {git_commit()}")
    print(f"machine: {machine()}\nversions: {versions()}\nseed: {model_cfg.seed}")
    print(f"data: {prepared.data}; prepared in {prepared.seconds:.1f}s")
    print(f"model: {model_cfg.model_dump_json()}")
    if args.profile:
        profile(model_cfg, prepared, args.profile, args.shapes)
        return
    batcher = SequenceBatcher(
        data, model_cfg.max_len, model_cfg.training.batch_size, model_cfg.training.length_bucketing
    )
    flops = epoch_flops(batcher, model_cfg, data.n_items)
    print(
        f"FLOPs per epoch: useful {flops['useful'] / 1e12:.2f} T, computed "
        f"{flops['computed'] / 1e12:.2f} T, ANCHORS.md convention {flops['anchor'] / 1e12:.2f} T"
    )
    if args.time_epochs:
        timed = model_cfg.model_copy(
            update={
                "training": model_cfg.training.model_copy(
                    update={"max_epochs": args.time_epochs, "max_minutes": None}
                )
            }
        )
        model = SASRecRecommender(timed).fit(data)
        assert model.training_ is not None
        for r in model.training_.history:
            print(f"epoch {r['epoch']}: {r['train_seconds']:.2f}s, loss {r['loss']:.4f}")
        return

    fitted = fit_model(cfg, prepared, "train")
    assert isinstance(fitted, SASRecRecommender) and fitted.training_ is not None
    result = fitted.training_
    history = result.history
    full = [r["train_seconds"] for r in history if not r.get("partial")]
    sec_epoch = statistics.median(full) if full else float("nan")
    val_s = statistics.median(r.get("validation_seconds", 0.0) for r in history)
    print(
        f"\ntraining: {result.epochs} epochs, stopped by {result.stopped}, {result.seconds:.0f}s; "
        f"best epoch {result.best_epoch} (validation NDCG@10 {result.best_metric:.4f})"
    )
    print(
        f"seconds per epoch (median of {len(full)} full epochs, training only): {sec_epoch:.2f}s "
        f"(validation {val_s:.2f}s each); ANCHORS.md plain SASRec: {ANCHOR_EPOCH_S:.0f}s"
    )
    print(
        f"  head matrix products in {model_cfg.head_precision}, the rest in "
        f"{model_cfg.training.precision}; machine GEMM rates: fp32 {FP32_GFLOPS:.0f}, "
        f"bf16 {BF16_GFLOPS:.0f} GFLOP/s"
    )
    for name in ("useful", "computed", "anchor"):
        rate = flops[name] / sec_epoch / 1e9
        print(
            f"  {name:8s} {flops[name] / 1e12:.2f} TFLOP/epoch -> {rate:6.1f} GFLOP/s = "
            f"{rate / FP32_GFLOPS:.0%} of the fp32 rate"
        )
    print(
        f"  fp32 floor for the ANCHORS.md count: {flops['anchor'] / FP32_GFLOPS / 1e9:.1f}s "
        f"per epoch; measured {sec_epoch:.2f}s"
    )
    print("\ntime to quality (validation NDCG@10 after each epoch):")
    print("| epoch | wall min | loss | val NDCG@10 | val HR@10 |")
    print("|---|---|---|---|---|")
    for r in history:
        v = r.get("validation", {})
        print(
            f"| {r['epoch']}{'*' if r.get('partial') else ''} | {r['elapsed_seconds'] / 60:.2f} | "
            f"{r['loss']:.4f} | {v.get('NDCG@10', float('nan')):.4f} | "
            f"{v.get('HR@10', float('nan')):.4f} |"
        )

    test = evaluate(fitted, cfg, prepared, "test")
    t0 = time.perf_counter()
    fitted.score(Query.for_users(prepared.data, np.arange(prepared.data.n_users)))
    score_all = time.perf_counter() - t0
    m, ci = test.metrics, test.ci
    print(f"\ntest ({test.n_users} users, read once with the best-validation model):")
    for key in ("HR@10", "NDCG@10", "MRR", "HR@20", "NDCG@20"):
        lo, hi = ci[key]
        print(f"  {key:8s} {m[key]:.4f} ± {(hi - lo) / 2:.4f}")
    print(
        f"scoring all {prepared.data.n_users} users × {prepared.data.n_items} items: "
        f"{score_all:.2f}s; peak RSS {peak_rss_mb():.0f} MiB; total {time.perf_counter() - started:.0f}s"
    )
    if args.output is not None:
        payload = {
            "config": cfg.model_dump(mode="json"),
            "machine": machine(),
            "versions": versions(),
            "commit": git_commit(),
            "seconds_per_epoch": sec_epoch,
            "validation_seconds": val_s,
            "flops_per_epoch": flops,
            "history": history,
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "test": {k: float(v) for k, v in m.items()},
            "test_ci": {k: [float(a), float(b)] for k, (a, b) in ci.items()},
            "score_all_seconds": score_all,
            "peak_rss_mb": peak_rss_mb(),
        }
        args.output.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
