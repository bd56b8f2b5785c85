"""The feedback loop's last step: retrain on the store's events, promote only if not worse.

`retrain` reads every event from the `Store` (erased users are gone from it, so the new model
never sees them), prepares them like ``recpilot train`` does, holds out each user's newest
event (leave-one-out by time), fits a candidate on the rest and evaluates the candidate and
the serving model on the same holdout with full ranking. The candidate is published to the
registry either way; it becomes ``current`` only if its metric is not worse than the serving
model's (minus ``tolerance``). The decision and both numbers are logged and appended to
``ROOT/retrain-log.jsonl``.

The serving model may have been trained on some of the holdout events (e.g. when its training
log was imported into the store), which favours it: promotion is conservative.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recpilot.config import ExperimentConfig, PreprocessConfig
from recpilot.data.schema import EventLog
from recpilot.errors import ConfigError, DataError
from recpilot.models.artifact import write_json_atomic
from recpilot.models.base import Recommender
from recpilot.serving.registry import ModelRegistry
from recpilot.serving.store import Store, now_ms

logger = logging.getLogger(__name__)

RETRAIN_LOG = "retrain-log.jsonl"


@dataclass(frozen=True)
class RetrainDecision:
    """What a retrain did and why."""

    candidate_version: str
    serving_version: str | None
    metric: str
    candidate_value: float
    serving_value: float | None
    promoted: bool
    reason: str
    n_events: int
    n_holdout_users: int
    seconds: float


def experiment_for(registry: ModelRegistry, model: dict[str, Any] | None) -> ExperimentConfig:
    """The experiment config of the serving version (``experiment.json`` when it has one,
    else its model config), with ``model`` replacing the model section when given."""
    from recpilot.pipeline import EXPERIMENT_FILE

    config = ExperimentConfig(preprocess=PreprocessConfig())
    try:
        path = registry.path(registry.current_version())
    except Exception:
        path = None
    if path is not None and (path / EXPERIMENT_FILE).is_file():
        raw = json.loads((path / EXPERIMENT_FILE).read_text())
        config = ExperimentConfig.model_validate(raw["config"])
    elif path is not None:
        spec = json.loads((path / "config.json").read_text())
        config = ExperimentConfig.model_validate(
            {"model": {"name": spec["model"], **spec["config"]}}
        )
    if model is not None:
        config.model = ExperimentConfig.model_validate({"model": model}).model
    config.split.strategy = "leave_one_out"
    return config


def retrain(
    store: Store,
    registry: ModelRegistry,
    *,
    model: dict[str, Any] | None = None,
    metric: str = "NDCG@10",
    tolerance: float = 0.0,
) -> RetrainDecision:
    """Train a candidate on the store's events and promote it if it is not worse.

    Args:
        store: where the events are.
        registry: where the serving model is and the candidate goes.
        model: the candidate's model config (a dict with ``name``); default: the serving one's.
        metric: the deciding metric, e.g. ``"NDCG@10"`` or ``"HR@20"``.
        tolerance: promote when ``candidate >= serving - tolerance``.

    Raises:
        DataError: if the store holds too few events for a holdout.
    """
    from recpilot.pipeline import evaluate, fit_model, prepare, save_experiment

    start = time.perf_counter()
    config = experiment_for(registry, model)
    k = int(metric.split("@")[1]) if "@" in metric else 10
    config.evaluation.ks = sorted({*config.evaluation.ks, k})
    frame = store.events_frame(config.preprocess.event_types)
    if frame.height == 0:
        raise DataError("the store holds no events to retrain on")
    prepared = prepare(config, EventLog(frame, source=f"store {store.table_prefix}events"))
    if len(prepared.split.test) == 0:
        raise DataError(
            "no user has enough events for a leave-one-out holdout (3 or more): "
            "collect more events before retraining"
        )
    candidate = fit_model(config, prepared, "train_validation")
    cand_result = evaluate(candidate, config, prepared, "test")
    if metric not in cand_result.metrics:
        raise ConfigError(
            f"unknown metric {metric!r}; available: {', '.join(sorted(cand_result.metrics))}"
        )
    cand_value = float(cand_result.metrics[metric])

    serving_version: str | None = None
    serving_value: float | None = None
    try:
        serving_version = registry.current_version()
    except Exception:
        logger.info(
            "the registry %s has no current model: the candidate is promoted", registry.root
        )
    if serving_version is not None:
        serving = Recommender.load(registry.path(serving_version))
        serving_value = float(evaluate(serving, config, prepared, "test").metrics[metric])

    if serving_value is None:
        promoted, reason = True, "no serving model"
    elif cand_value >= serving_value - tolerance:
        promoted, reason = True, f"{metric} {cand_value:.4f} >= {serving_value:.4f} - {tolerance}"
    else:
        promoted, reason = False, f"{metric} {cand_value:.4f} < {serving_value:.4f} - {tolerance}"

    build = Path(tempfile.mkdtemp(prefix=".retrain-", dir=_ensure(registry.root)))
    try:
        artefact = candidate.save(build / "candidate")
        save_experiment(artefact, config, "train_validation", prepared)
        write_json_atomic(
            artefact / "metrics.json",
            {
                "holdout": "newest event per user in the store (leave-one-out)",
                "metrics": cand_result.metrics,
                "serving_version": serving_version,
                "serving_metrics": {metric: serving_value},
            },
        )
        version = registry.publish(artefact, make_current=promoted)
    finally:
        shutil.rmtree(build, ignore_errors=True)

    decision = RetrainDecision(
        candidate_version=version,
        serving_version=serving_version,
        metric=metric,
        candidate_value=cand_value,
        serving_value=serving_value,
        promoted=promoted,
        reason=reason,
        n_events=prepared.data.n_events,
        n_holdout_users=len(prepared.split.test),
        seconds=round(time.perf_counter() - start, 3),
    )
    with open(registry.root / RETRAIN_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": now_ms(), **asdict(decision)}) + "\n")
    logger.info(
        "retrain: candidate %s %s (%s); serving %s",
        version,
        "promoted" if promoted else "kept out",
        reason,
        serving_version,
    )
    return decision


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
