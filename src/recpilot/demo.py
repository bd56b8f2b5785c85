"""`recpilot demo`: the whole loop on the built-in simulator, in a few minutes on 2 cores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recpilot.config import EvaluationConfig, ExperimentConfig, SimulatorConfig
from recpilot.evaluation import compare_results
from recpilot.models.base import Query, Recommender
from recpilot.models.registry import model_names
from recpilot.pipeline import (
    SYNTHETIC_PREPROCESS,
    evaluate,
    fit_model,
    prepare,
    result_payload,
    save_experiment,
)

METRICS = ("HR@10", "NDCG@10", "MRR", "Coverage@10")
HEADERS = ("HR@10", "NDCG@10", "MRR", "Cov@10")


def _cell(result: Any, label: str) -> str:
    value = result.metrics.get(label)
    if value is None:
        return "–"
    ci = result.ci.get(label)
    return f"{value:.4f}" + (f" ±{(ci[1] - ci[0]) / 2:.4f}" if ci else "")


def run_demo(
    console: Console, output_dir: Path, n_users: int = 3000, n_items: int = 1500, seed: int = 42
) -> dict[str, Any]:
    """Simulate, prepare, fit every baseline, evaluate on validation then test, print, save."""
    started = time.perf_counter()
    config = ExperimentConfig(
        simulator=SimulatorConfig(n_users=n_users, n_items=n_items, seed=seed),
        preprocess=SYNTHETIC_PREPROCESS,
        evaluation=EvaluationConfig(ks=[10, 20]),
        seed=seed,
    )
    console.rule("[bold]RecPilot demo")
    console.print(f"simulating {n_users:,} users and {n_items:,} items (seed {seed}) …")
    prepared = prepare(config)
    source = prepared.log.summary()
    console.print(
        f"log: {source['n_events']:,} events (views, clicks, carts, purchases); "
        f"next-item data: {prepared.data} after {', '.join(prepared.report.lines()) or 'no repairs'}"
    )
    console.print(
        f"split: leave-one-out by time — {len(prepared.split.test):,} users evaluated, "
        "full ranking over all items, history excluded\n"
    )

    rows: list[dict[str, Any]] = []
    results = {}
    models: dict[str, Recommender] = {}
    for name in model_names():
        cfg = config.model_copy(update={"model": _model_config(name, seed)})
        fitted = fit_model(cfg, prepared, "train")
        val = evaluate(fitted, cfg, prepared, "validation")
        t0 = time.perf_counter()
        final = fit_model(cfg, prepared, "train_validation")
        fit_seconds = time.perf_counter() - t0
        test = evaluate(final, cfg, prepared, "test")
        results[name] = test
        models[name] = final
        payload = result_payload(name, test, prepared, cfg, fit_seconds=round(fit_seconds, 3))
        payload["validation_metrics"] = {k: float(v) for k, v in val.metrics.items()}
        rows.append(payload)

    table = Table(title="test metrics (mean ± 95% CI half-width)", header_style="bold")
    table.add_column("model", no_wrap=True)
    for label in HEADERS:
        table.add_column(label, justify="right")
    table.add_column("val NDCG@10", justify="right")
    table.add_column("fit s", justify="right")
    for row in rows:
        res = results[row["model"]]
        table.add_row(
            row["model"],
            *(_cell(res, m) for m in METRICS),
            f"{row['validation_metrics']['NDCG@10']:.4f}",
            f"{row['fit_seconds']:.2f}",
        )
    console.print(table)

    # the best model is chosen on validation, then its test numbers are the ones to quote
    best = max(rows, key=lambda r: r["validation_metrics"]["NDCG@10"])["model"]
    console.print(f"best on validation NDCG@10: [bold]{best}[/]")
    for name, res in results.items():
        if name == best:
            continue
        cmp = compare_results(results[best], res, "NDCG@10")
        d = cmp.to_dict()
        console.print(
            f"  {best} vs {name}: ΔNDCG@10 = {d['mean_difference']:+.4f} "
            f"(paired t-test p = {d['t_pvalue']:.2g}{', significant' if d['significant'] else ''})"
        )
        next(r for r in rows if r["model"] == name)["vs_best"] = {"best": best, **d}

    _show_samples(console, models[best], prepared)

    output_dir = Path(output_dir)
    artifact = models[best].save(output_dir / f"model-{best}")
    save_experiment(
        artifact,
        config.model_copy(update={"model": models[best].config}),
        "train_validation",
        prepared,
    )
    from recpilot.models.artifact import write_json_atomic

    summary = {"best": best, "results": rows, "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(output_dir / "results.json", summary)
    console.print(
        f"\nresults → {output_dir / 'results.json'}; best model → {artifact} "
        f"({summary['seconds']:.0f} s in all)"
    )
    return summary


def _model_config(name: str, seed: int) -> Any:
    from recpilot.models.registry import model_from_config

    cfg = model_from_config({"name": name}).config
    if hasattr(cfg, "seed"):
        cfg = cfg.model_copy(update={"seed": seed})
    return cfg


def _show_samples(console: Console, model: Recommender, prepared: Any, n: int = 3) -> None:
    data = prepared.data
    titles: dict[Any, str] = {}
    table_items = prepared.log.items
    if table_items is not None and "title" in table_items.columns:
        cols = ["item_id", "title"] + (["category"] if "category" in table_items.columns else [])
        for row in table_items.select(cols).iter_rows(named=True):
            label = row["title"] + (f" [{row['category']}]" if "category" in row else "")
            titles[row["item_id"]] = escape(label)  # "[books]" is not rich markup
    test = prepared.split.test
    rows = list(range(min(n, len(test))))
    query = Query(test.users[rows], tuple(test.histories[r] for r in rows))
    ids, _ = model.recommend(query, k=5)
    for b, r in enumerate(rows):
        user = data.users.lookup([test.users[r]])[0]
        hist = data.items.lookup(test.histories[r][-4:])
        target = data.items.lookup(test.targets[r])[0]
        recs = data.items.lookup(ids[b][ids[b] >= 0])
        console.print(f"\n[bold]user {user}[/] recently engaged with:")
        for item in hist:
            console.print(f"   · {titles.get(item, item)}")
        console.print(f"  {model.name} recommends (next actual: {titles.get(target, target)}):")
        for item in recs:
            mark = " ✔" if item == target else ""
            console.print(f"   → {titles.get(item, item)}{mark}")
