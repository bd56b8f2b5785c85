"""The `recpilot` command line: prepare, train, evaluate, recommend, serve, retrain, demo."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recpilot import __version__
from recpilot.config import ConfigError, ExperimentConfig, read_config_file
from recpilot.errors import RecPilotError

app = typer.Typer(
    name="recpilot",
    help="Predict user behaviour with Transformer models and guide what users see.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output gets a table-friendly width instead of rich's 80-column fallback.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

FORMATS = (
    "movielens-100k, movielens-1m, movielens-latest, sequence-lines, csv, parquet, jsonl, synthetic"
)

DataOpt = Annotated[Path | None, typer.Option("--data", help="dataset folder or file")]
FormatOpt = Annotated[str | None, typer.Option("--format", help=f"one of: {FORMATS}")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML or TOML experiment config")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="random seed (overrides the config)")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log progress details")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_config(
    config_file: Path | None,
    data: Path | None = None,
    fmt: str | None = None,
    model: str | None = None,
    seed: int | None = None,
) -> tuple[ExperimentConfig, bool]:
    """Defaults < config file < command-line flags. Returns the config and whether the
    ``preprocess`` section was given explicitly."""
    raw: dict[str, Any] = read_config_file(config_file) if config_file is not None else {}
    data_section = dict(raw.get("data") or {})
    if data is not None:
        data_section["path"] = str(data)
    if fmt is not None:
        data_section["format"] = fmt
    elif data is not None and "format" not in data_section:
        raise ConfigError("--data needs --format (one of: " + FORMATS + ")")
    raw["data"] = data_section
    if model is not None:
        from recpilot.models.registry import model_names

        if model not in model_names(include_neural=True):
            raise ConfigError(
                f"unknown model {model!r}; known models: {', '.join(model_names(include_neural=True))}"
            )
        current = raw.get("model") or {}
        raw["model"] = current if current.get("name") == model else {"name": model}
    if seed is not None:
        raw["seed"] = seed
    from recpilot.config import load_config
    from recpilot.pipeline import effective_preprocess

    explicit = "preprocess" in raw
    config = load_config(None, **raw)
    config.preprocess = effective_preprocess(config, explicit)
    if "seed" in raw and hasattr(config.model, "seed") and "seed" not in (raw.get("model") or {}):
        config.model.seed = config.seed  # one seed drives everything unless set per model
    return config, explicit


def artifact_config(
    artifact: Path, config_file: Path | None, data: Path | None, fmt: str | None
) -> ExperimentConfig:
    """The experiment an artefact was trained in; ``--data/--format`` point it at another copy of
    the data (same cleaning and split), ``--config`` replaces it."""
    from recpilot.pipeline import load_experiment

    stored, _ = load_experiment(artifact)
    if config_file is not None:
        stored, _ = build_config(config_file, data, fmt)
    elif data is not None:
        if fmt is None:
            raise ConfigError("--data needs --format (one of: " + FORMATS + ")")
        stored.data = stored.data.model_copy(update={"path": data, "format": fmt})
    return stored


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def _metrics_table(title: str, rows: list[dict[str, Any]], labels: list[str]) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("model")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("fit s", justify="right")
    for row in rows:
        cells = []
        for label in labels:
            value = row["metrics"].get(label)
            lo_hi = row.get("ci95", {}).get(label)
            if value is None:
                cells.append("–")
            elif lo_hi:
                cells.append(f"{value:.4f} ±{(lo_hi[1] - lo_hi[0]) / 2:.4f}")
            else:
                cells.append(f"{value:.4f}")
        table.add_row(row["model"], *cells, f"{row.get('fit_seconds', 0):.1f}")
    return table


def _write_json(path: Path, payload: Any) -> None:
    from recpilot.models.artifact import write_json_atomic

    write_json_atomic(path, payload)


@app.command()
def prepare(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="where to write the prepared data")
    ],
    data: DataOpt = None,
    fmt: FormatOpt = None,
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Read, clean, encode and split a log; write Parquet tables and a report."""
    _setup_logging(verbose)
    try:
        from recpilot.pipeline import prepare as run_prepare
        from recpilot.pipeline import write_prepared

        cfg, _ = build_config(config, data, fmt, seed=seed)
        prepared = run_prepare(cfg)
        write_prepared(output_dir, cfg, prepared)
    except RecPilotError as exc:
        _fail(exc)
    console.print(f"prepared {prepared.data} → {output_dir}")
    for line in prepared.report.lines():
        console.print(f"  repair: {line}")
    console.print(
        f"  split {cfg.split.strategy}: train {prepared.split.train.n_events:,} events, "
        f"validation {len(prepared.split.validation):,} users, test {len(prepared.split.test):,} users"
    )


@app.command()
def train(
    output_dir: Annotated[Path, typer.Option("--output-dir", help="artefact directory to write")],
    model: Annotated[str | None, typer.Option("--model", help="model name")] = None,
    data: DataOpt = None,
    fmt: FormatOpt = None,
    config: ConfigOpt = None,
    fit_on: Annotated[
        str, typer.Option("--fit-on", help="train | train_validation | all (events used to fit)")
    ] = "train_validation",
    seed: SeedOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fit one model and save it as an artefact directory (safetensors, config, vocabularies)."""
    _setup_logging(verbose)
    if fit_on not in ("train", "train_validation", "all"):
        _fail(ConfigError(f"--fit-on must be train, train_validation or all, got {fit_on!r}"))
    try:
        from recpilot.pipeline import fit_model, save_experiment
        from recpilot.pipeline import prepare as run_prepare

        cfg, _ = build_config(config, data, fmt, model, seed)
        prepared = run_prepare(cfg)
        start = time.perf_counter()
        fitted = fit_model(cfg, prepared, fit_on)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        fitted.save(output_dir)
        save_experiment(output_dir, cfg, fit_on, prepared)  # type: ignore[arg-type]
    except RecPilotError as exc:
        _fail(exc)
    console.print(f"trained {fitted.name} on {fit_on} ({seconds:.1f}s) → {output_dir}")


@app.command()
def evaluate(
    output: Annotated[
        Path | None, typer.Option("--output", help="write the results as JSON")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="model name(s) to train and evaluate; 'all' for every baseline"
        ),
    ] = None,
    artifact: Annotated[
        Path | None, typer.Option("--artifact", help="evaluate a trained artefact")
    ] = None,
    data: DataOpt = None,
    fmt: FormatOpt = None,
    config: ConfigOpt = None,
    split: Annotated[str, typer.Option("--split", help="validation | test")] = "test",
    seed: SeedOpt = None,
    verbose: VerboseOpt = False,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            help="ranking (next item, the default) | behaviour (calibrated click/cart/"
            "purchase or rating >= 4 probabilities: logistic, lightgbm, bst)",
        ),
    ] = "ranking",
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", help="behaviour task: report (index.html, PNGs) and fitted models"
        ),
    ] = None,
) -> None:
    """Full-ranking evaluation (leave-one-out by default, history excluded) with 95% CIs;
    ``--task behaviour``: behaviour-probability models with a calibration report."""
    _setup_logging(verbose)
    if task not in ("ranking", "behaviour"):
        _fail(ConfigError(f"--task must be ranking or behaviour, got {task!r}"))
    if task == "behaviour":
        _evaluate_behaviour(model, data, fmt, config, seed, output, output_dir)
        return
    if model is not None and artifact is not None:
        _fail(ConfigError("give either --model NAME or --artifact DIR, not both"))
    if model is None and artifact is None and config is None:
        _fail(
            ConfigError("give --model NAME (or 'all'), --artifact DIR, or a --config with a model")
        )
    if split not in ("validation", "test"):
        _fail(ConfigError(f"--split must be validation or test, got {split!r}"))
    try:
        from recpilot.models.base import Recommender
        from recpilot.models.registry import model_names
        from recpilot.pipeline import (
            evaluate as run_evaluate,
        )
        from recpilot.pipeline import (
            fit_model,
            fit_part_for,
            result_payload,
        )
        from recpilot.pipeline import (
            prepare as run_prepare,
        )

        payloads: list[dict[str, Any]] = []
        results = []
        if artifact is not None:
            cfg = artifact_config(artifact, config, data, fmt)
            cfg.evaluation.split = split  # type: ignore[assignment]
            prepared = run_prepare(cfg)
            fitted = Recommender.load(artifact)
            result = run_evaluate(fitted, cfg, prepared, split)
            payloads.append(
                result_payload(fitted.name, result, prepared, cfg, artifact=str(artifact))
            )
            results.append(result)
        else:
            names: list[str]
            if model is None:
                names = [build_config(config, data, fmt, seed=seed)[0].model.name]
            elif model == ["all"]:
                names = model_names()
            else:
                names = [m for part in model for m in part.split(",") if m]
            base_cfg, _ = build_config(config, data, fmt, names[0], seed)
            base_cfg.evaluation.split = split  # type: ignore[assignment]
            prepared = run_prepare(base_cfg)
            for name in names:
                cfg, _ = build_config(config, data, fmt, name, seed)
                cfg.evaluation.split = split  # type: ignore[assignment]
                start = time.perf_counter()
                fitted = fit_model(cfg, prepared, fit_part_for(split))
                fit_seconds = time.perf_counter() - start
                result = run_evaluate(fitted, cfg, prepared, split)
                payloads.append(
                    result_payload(name, result, prepared, cfg, fit_seconds=round(fit_seconds, 3))
                )
                results.append(result)
    except RecPilotError as exc:
        _fail(exc)
    labels = [m for m in payloads[0]["metrics"] if m.split("@")[0] in ("HR", "NDCG", "MRR")]
    console.print(_metrics_table(f"{split} ({prepared.data})", payloads, labels))
    if len(results) > 1:
        _print_significance(results, payloads)
    if output is not None:
        out: Any = payloads[0] if len(payloads) == 1 else {"results": payloads}
        _write_json(output, out)
        console.print(f"results → {output}")


def _evaluate_behaviour(
    model: list[str] | None,
    data: Path | None,
    fmt: str | None,
    config: Path | None,
    seed: int | None,
    output: Path | None,
    output_dir: Path | None,
) -> None:
    """``evaluate --task behaviour``: build examples, fit, calibrate, report (test read once).

    The config file (optional) holds a ``behaviour`` section (`BehaviourConfig`), and for the
    synthetic shop a ``simulator`` section; ``--data/--format`` name the log (default: the
    simulator, whose true probabilities add a Bayes-optimal row).
    """
    from pydantic import ValidationError

    from recpilot.config import BehaviourConfig, DataConfig, SimulatorConfig
    from recpilot.config import _format_validation_error as format_error

    try:
        raw = read_config_file(config) if config is not None else {}
        section = dict(raw.get("behaviour") or {})
        if seed is not None:
            section["seed"] = seed
        try:
            cfg = BehaviourConfig.model_validate(section)
            sim_cfg = SimulatorConfig.model_validate(raw.get("simulator") or {})
            data_cfg = DataConfig.model_validate(raw.get("data") or {})
        except ValidationError as exc:
            raise ConfigError(format_error(exc, str(config or "options"))) from exc
        if data is not None:
            if fmt is None:
                raise ConfigError("--data needs --format (one of: " + FORMATS + ")")
            data_cfg = data_cfg.model_copy(update={"path": data, "format": fmt})
        elif fmt is not None:
            data_cfg = data_cfg.model_copy(update={"format": fmt})
        names = [m for part in (model or ["all"]) for m in part.split(",") if m]
        if names == ["all"]:
            names = ["logistic", "lightgbm", "bst"]
        from recpilot.behaviour.task import model_configs, run_behaviour_task

        models = model_configs(names, cfg)
        oracle = None
        if data_cfg.format == "synthetic":
            from recpilot.data.simulator import Simulator

            simulated = Simulator(sim_cfg).generate()
            log, oracle, source = simulated.log, simulated.truth, "simulator"
        else:
            from recpilot.data.readers import read_events

            log = read_events(data_cfg)
            source = str(data_cfg.path)
        results = run_behaviour_task(
            log,
            cfg,
            models,
            output_dir,
            reference="bst" if "bst" in names else None,
            oracle=oracle,
            save_models=output_dir is not None,
            title=f"Behaviour probability: {source}",
        )
    except RecPilotError as exc:
        _fail(exc)
    table = Table(title=f"behaviour, test period ({source})", header_style="bold")
    cols = ["auc", "user_auc", "log_loss", "ece", "accuracy", "precision", "recall", "f1"]
    table.add_column("behaviour")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for behaviour, by_model in results["metrics"].items():
        for name, m in by_model.items():
            table.add_row(behaviour, name, *(f"{m[c]:.4f}" for c in cols))
    console.print(table)
    if output_dir is not None:
        console.print(f"report → {output_dir / 'index.html'}; models → {output_dir / 'models'}")
    if output is not None:
        _write_json(output, results)
        console.print(f"results → {output}")


def _print_significance(
    results: list[Any], payloads: list[dict[str, Any]], metric: str = "NDCG@10"
) -> None:
    from recpilot.evaluation import compare_results

    if metric not in payloads[0]["metrics"]:
        return
    best = max(range(len(results)), key=lambda i: payloads[i]["metrics"][metric])
    for i, res in enumerate(results):
        if i == best:
            continue
        cmp = compare_results(results[best], res, metric)
        payloads[i]["vs_best"] = {"best": payloads[best]["model"], **_jsonable(cmp)}
        console.print(
            f"  {payloads[best]['model']} vs {payloads[i]['model']}: Δ{metric} = "
            f"{_get(cmp, 'mean_difference'):+.4f}, paired t-test p = {_get(cmp, 't_pvalue'):.2g}"
        )


def _get(obj: Any, key: str) -> float:
    return float(getattr(obj, key))


def _jsonable(obj: Any) -> dict[str, Any]:
    return dict(obj.to_dict())


@app.command()
def recommend(
    artifact: Annotated[Path, typer.Option("--artifact", help="a trained artefact directory")],
    output: Annotated[Path, typer.Option("--output", help="JSON lines file to write")],
    data: DataOpt = None,
    fmt: FormatOpt = None,
    config: ConfigOpt = None,
    split: Annotated[str, typer.Option("--split", help="validation | test")] = "test",
    k: Annotated[int, typer.Option("--k", min=1, help="list length")] = 10,
    verbose: VerboseOpt = False,
) -> None:
    """Top-k for every evaluated user from the history before their split event (history excluded)."""
    _setup_logging(verbose)
    try:
        from recpilot.models.base import Recommender
        from recpilot.pipeline import prepare as run_prepare
        from recpilot.pipeline import write_recommendations

        cfg = artifact_config(artifact, config, data, fmt)
        prepared = run_prepare(cfg)
        fitted = Recommender.load(artifact)
        count = write_recommendations(output, fitted, prepared, split, k)
    except RecPilotError as exc:
        _fail(exc)
    console.print(f"wrote top-{k} for {count:,} users → {output}")


@app.command()
def serve(
    artifact: Annotated[
        Path | None,
        typer.Option("--artifact", help="model artefact directory, or a model registry root"),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            "--store",
            "--dsn",
            help="store URL: sqlite:///PATH.db (default sqlite:///recpilot.db) or "
            "postgresql+psycopg://USER@HOST:PORT/DB",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="default 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option("--port", help="default 8000")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="RECPILOT_API_KEY",
            show_envvar=True,
            help="key with read, write and admin scopes (clients send it as X-API-Key); "
            "without any key, write and admin routes answer 401",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML or TOML service settings (top level or `service:`)"),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a trained model over HTTP: events in, recommendations out (see /docs)."""
    _setup_logging(True)
    if not verbose:
        logging.getLogger("recpilot").setLevel(logging.WARNING)
        logging.getLogger("recpilot.serving").setLevel(logging.INFO)
    try:
        from recpilot.config import ApiKeyConfig, load_service_settings

        settings = load_service_settings(config, artifact=artifact, db=db, host=host, port=port)
        if api_key:
            settings.api_keys = [*settings.api_keys, ApiKeyConfig(key=api_key, name="cli")]
    except RecPilotError as exc:
        _fail(exc)
    except ValueError as exc:  # pydantic: e.g. a key shorter than 16 characters
        _fail(ConfigError(f"invalid option: {exc}"))
    import uvicorn

    from recpilot.serving.app import create_app

    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)

    uvicorn.run(
        create_app(settings, freeze_gc=True),
        host=settings.host,
        port=settings.port,
        log_level="info" if verbose else "warning",
    )


@app.command()
def retrain(
    registry: Annotated[
        Path, typer.Option("--registry", help="model registry root (versions/, current)")
    ],
    db: Annotated[
        str,
        typer.Option("--db", "--store", "--dsn", help="the serving store's URL (events source)"),
    ] = "sqlite:///recpilot.db",
    table_prefix: Annotated[str, typer.Option("--table-prefix")] = "",
    model: Annotated[
        str | None, typer.Option("--model", help="candidate model; default: the serving one")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help="deciding metric")] = "NDCG@10",
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="promote if >= serving - this")
    ] = 0.0,
    verbose: VerboseOpt = False,
) -> None:
    """Train on the store's events; promote the new model only if it is not worse."""
    _setup_logging(verbose)
    try:
        from recpilot.serving.registry import ModelRegistry
        from recpilot.serving.retrain import retrain as run_retrain
        from recpilot.serving.store import Store

        store = Store(db, table_prefix=table_prefix)
        try:
            store.migrate()
            decision = run_retrain(
                store,
                ModelRegistry(registry),
                model=None if model is None else {"name": model},
                metric=metric,
                tolerance=tolerance,
            )
        finally:
            store.close()
    except RecPilotError as exc:
        _fail(exc)
    serving = "–" if decision.serving_value is None else f"{decision.serving_value:.4f}"
    console.print(
        f"candidate {decision.candidate_version}: {metric} {decision.candidate_value:.4f} vs "
        f"serving {decision.serving_version or '–'}: {serving} on {decision.n_holdout_users:,} "
        f"held-out users → {'PROMOTED' if decision.promoted else 'not promoted'} "
        f"({decision.reason})"
    )
    if decision.promoted:
        console.print("running servers pick it up on POST /admin/reload")


@app.command()
def demo(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="where results and the best model go")
    ] = Path("runs/demo"),
    users: Annotated[int, typer.Option("--users", min=10, help="simulated users")] = 3000,
    items: Annotated[int, typer.Option("--items", min=10, help="simulated items")] = 1500,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    verbose: VerboseOpt = False,
) -> None:
    """Simulate a shop, train every baseline, print the comparison and sample recommendations."""
    _setup_logging(verbose)
    from recpilot.demo import run_demo

    try:
        run_demo(console, output_dir, n_users=users, n_items=items, seed=seed)
    except RecPilotError as exc:
        _fail(exc)


@app.command()
def version() -> None:
    """Print the RecPilot version."""
    console.print(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except RecPilotError as exc:  # pragma: no cover - commands catch their own
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["app", "build_config", "main"]
