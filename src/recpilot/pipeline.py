"""The stages wired together: load → prepare → split → fit → evaluate → recommend.

The CLI and the demo call these functions; each stage also works alone from Python.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from recpilot import __version__
from recpilot.config import ExperimentConfig, PreprocessConfig
from recpilot.data.interactions import Interactions
from recpilot.data.preprocess import build_interactions
from recpilot.data.schema import EventLog, RepairReport
from recpilot.data.split import EvalSet, Split, make_split
from recpilot.errors import ArtifactError, DataError
from recpilot.evaluation import EvaluationResult, Evaluator
from recpilot.models.artifact import write_json_atomic
from recpilot.models.base import Query, Recommender
from recpilot.models.registry import model_from_config
from recpilot.progress import progress

logger = logging.getLogger(__name__)

FitOn = Literal["train", "train_validation", "all"]
EXPERIMENT_FILE = "experiment.json"

#: The simulator logs a funnel; next-item models learn from engaged items (click and deeper),
#: one interaction per user and item, deeper engagement weighing more.
SYNTHETIC_PREPROCESS = PreprocessConfig(
    event_types=["click", "cart", "purchase"],
    deduplicate="user_item",
    event_weights={"click": 1.0, "cart": 2.0, "purchase": 4.0},
    min_user_events=1,
)


@dataclass(frozen=True)
class Prepared:
    """A log after cleaning and splitting."""

    log: EventLog
    data: Interactions
    split: Split
    report: RepairReport
    seconds: float

    def train_data(self, fit_on: FitOn) -> Interactions:
        if fit_on == "train":
            return self.split.train
        if fit_on == "train_validation":
            return self.split.train_validation
        return self.data


def effective_preprocess(config: ExperimentConfig, explicit: bool) -> PreprocessConfig:
    """Synthetic data gets `SYNTHETIC_PREPROCESS` unless the user set ``preprocess`` explicitly."""
    if config.data.format == "synthetic" and not explicit:
        return SYNTHETIC_PREPROCESS
    return config.preprocess


def load_log(config: ExperimentConfig) -> EventLog:
    """Read the configured event log (or generate the synthetic one)."""
    if config.data.format == "synthetic":
        from recpilot.data.simulator import Simulator

        return Simulator(config.simulator).generate().log
    if config.data.path is None:
        raise DataError(f"format {config.data.format!r} needs a data path (--data PATH)")
    from recpilot.data.readers import read_events

    return read_events(config.data)


def prepare(config: ExperimentConfig, log: EventLog | None = None) -> Prepared:
    """Load (unless given), clean, encode and split."""
    start = time.perf_counter()
    log = log if log is not None else load_log(config)
    data, report = build_interactions(log, config.preprocess)
    split = make_split(data, config.split)
    seconds = time.perf_counter() - start
    logger.info("prepared %s in %.1fs; %d users evaluated", data, seconds, len(split.test))
    return Prepared(log, data, split, report, seconds)


def fit_model(config: ExperimentConfig, prepared: Prepared, fit_on: FitOn = "train") -> Recommender:
    """Build the configured model and fit it on one part of the data.

    Models that select themselves on validation (``uses_validation``, e.g. SASRec's early
    stopping) get ``split.validation`` with ``fit_on="train"``. Those that are not refitted for
    the test read (``refit_for_test = False``) are fitted on train with validation for
    ``"train_validation"`` as well: the test read then uses the model selected on validation,
    whose test histories include the validation event. ``"all"`` fits on every event without
    validation.
    """
    model = model_from_config(config.model)
    data = prepared.train_data(fit_on)
    validation = None
    if (
        model.uses_validation
        and fit_on != "all"
        and (fit_on == "train" or not model.refit_for_test)
    ):
        data, validation = prepared.split.train, prepared.split.validation
    if getattr(config.model, "text_features", False) or config.model.name == "textknn":
        # item text from the side table, through the shipped MiniLM encoder (offline)
        from recpilot.content import MiniLMEncoder, catalogue_vectors

        cast(Any, model).set_text_vectors(catalogue_vectors(data, MiniLMEncoder()))
    start = time.perf_counter()
    model.fit(data, validation)
    logger.info(
        "fitted %s on %s%s in %.1fs",
        model.name,
        "train" if validation is not None else fit_on,
        " (validation for model selection)" if validation is not None else "",
        time.perf_counter() - start,
    )
    return model


def fit_part_for(split_name: str) -> FitOn:
    """Validation is scored by a model fitted on train; test by one fitted on everything before
    each user's test event (train + validation) — validation is never used to score test.

    `fit_model` keeps models selected on validation (``refit_for_test = False``) on train for
    ``"train_validation"``; their test histories still include the validation event."""
    return "train" if split_name == "validation" else "train_validation"


def to_model_space(eval_set: EvalSet, data: Interactions, model: Recommender) -> EvalSet:
    """Express an evaluation set in a model's user and item indices.

    With the model's own vocabularies this is the identity. Otherwise history items the model
    does not know are dropped, unknown targets removed (a user may be left with none) and users
    passed as anonymous (-1), to be scored from their histories.
    """
    assert model.items_ is not None
    same_items = data.items == model.items_
    same_users = model.users_ is not None and data.users == model.users_
    if same_items and same_users:
        return eval_set
    users = eval_set.users if same_users else np.full(len(eval_set), -1, dtype=np.int64)
    if same_items:
        return replace(eval_set, users=users)
    mapping = model.items_.index(data.items.ids, missing="unknown")
    mapped = [mapping[h] for h in eval_set.histories]
    hists = tuple(h[h >= 0] for h in mapped)
    times = None
    if eval_set.history_times is not None:
        times = tuple(t[h >= 0] for t, h in zip(eval_set.history_times, mapped, strict=True))
    types = None
    if eval_set.history_event_types is not None:
        types = tuple(t[h >= 0] for t, h in zip(eval_set.history_event_types, mapped, strict=True))
    targets = tuple(t[t >= 0] for t in (mapping[t] for t in eval_set.targets))
    return EvalSet(eval_set.name, users, hists, targets, eval_set.cutoffs, times, types)


def evaluate(
    model: Recommender, config: ExperimentConfig, prepared: Prepared, split_name: str | None = None
) -> EvaluationResult:
    """Full-ranking evaluation of a fitted model on the validation or test users."""
    split_name = split_name or config.evaluation.split
    eval_set = prepared.split.eval_set(split_name)
    eval_set = to_model_space(eval_set, prepared.data, model)
    known = np.asarray([len(t) > 0 for t in eval_set.targets], dtype=bool)
    dropped = int((~known).sum())
    if dropped:
        eval_set = EvalSet(
            eval_set.name,
            eval_set.users[known],
            tuple(h for h, k in zip(eval_set.histories, known, strict=True) if k),
            tuple(t for t, k in zip(eval_set.targets, known, strict=True) if k),
            eval_set.cutoffs[known],
            None
            if eval_set.history_times is None
            else tuple(t for t, k in zip(eval_set.history_times, known, strict=True) if k),
            None
            if eval_set.history_event_types is None
            else tuple(t for t, k in zip(eval_set.history_event_types, known, strict=True) if k),
        )
        logger.warning(
            "%d %s users have targets the model's vocabulary does not know; they count as misses",
            dropped,
            split_name,
        )
    result = Evaluator(config.evaluation).evaluate(
        model, eval_set, train=prepared.train_data(fit_part_for(split_name))
    )
    if dropped:
        result = result.with_misses(dropped)
    return result


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined values (e.g. a one-user interval) become null."""
    value = float(value)
    return value if np.isfinite(value) else None


def result_payload(
    model_name: str,
    result: EvaluationResult,
    prepared: Prepared,
    config: ExperimentConfig,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON written by ``recpilot evaluate --output`` (a stable interface)."""
    payload: dict[str, Any] = {
        "model": model_name,
        "split": result.split,
        "metrics": {k: _finite(v) for k, v in result.metrics.items()},
        "ci95": {k: [_finite(lo), _finite(hi)] for k, (lo, hi) in result.ci.items()},
        "n_users": prepared.data.n_users,
        "n_items": prepared.data.n_items,
        "n_events": prepared.data.n_events,
        "n_evaluated_users": result.n_users,
        "protocol": {
            "split": config.split.strategy,
            "ranking": "full (all items)",
            "exclude_seen": config.evaluation.exclude_seen,
            "ties": "expected value over a random order of tied items",
        },
        "data": {
            "format": config.data.format,
            "path": str(config.data.path) if config.data.path else None,
            "repairs": prepared.report.as_dict(),
        },
        "config": config.model.model_dump(mode="json"),
        "recpilot_version": __version__,
        "seconds": {"prepare": round(prepared.seconds, 3), "evaluate": round(result.seconds, 3)},
    }
    payload.update(extra)
    return payload


# -- artefacts with their experiment ------------------------------------------------------------
def save_experiment(
    path: Path, config: ExperimentConfig, fit_on: FitOn, prepared: Prepared
) -> None:
    write_json_atomic(
        Path(path) / EXPERIMENT_FILE,
        {
            "config": config.model_dump(mode="json"),
            "fit_on": fit_on,
            "data_summary": prepared.data.describe(),
            "repairs": prepared.report.as_dict(),
        },
    )


def load_experiment(path: Path) -> tuple[ExperimentConfig, FitOn]:
    file = Path(path) / EXPERIMENT_FILE
    if not file.is_file():
        raise ArtifactError(
            f"{path} has no {EXPERIMENT_FILE}: it was not written by `recpilot train`"
        )
    raw = json.loads(file.read_text())
    return ExperimentConfig.model_validate(raw["config"]), raw["fit_on"]


# -- recommendations for an evaluation set ------------------------------------------------------
def recommend_eval_set(
    model: Recommender, eval_set: EvalSet, k: int, batch_size: int = 1024
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(row, item_idx (k,), scores (k,))`` for every user of ``eval_set``, history excluded."""
    n = len(eval_set)
    for start in progress(range(0, n, batch_size), "recommending", total=-(-n // batch_size)):
        stop = min(n, start + batch_size)
        query = Query(
            eval_set.users[start:stop],
            eval_set.histories[start:stop],
            None if eval_set.history_times is None else eval_set.history_times[start:stop],
            None
            if eval_set.history_event_types is None
            else eval_set.history_event_types[start:stop],
        )
        ids, scores = model.recommend(query, k=k, exclude_seen=True)
        for j in range(stop - start):
            yield start + j, ids[j], scores[j]


def write_recommendations(
    path: Path,
    model: Recommender,
    prepared: Prepared,
    split_name: str,
    k: int,
    batch_size: int = 1024,
) -> int:
    """Write one JSON line per evaluated user: ``{"user_id", "items", "scores"}`` (external ids)."""
    eval_set = prepared.split.eval_set(split_name)
    mapped = to_model_space(eval_set, prepared.data, model)
    assert model.items_ is not None
    user_ids = prepared.data.users.lookup(eval_set.users)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row, ids, scores in recommend_eval_set(model, mapped, k, batch_size):
                valid = ids >= 0
                items = model.items_.lookup(ids[valid])
                fh.write(
                    json.dumps(
                        {
                            "user_id": user_ids[row],
                            "items": items,
                            "scores": [round(float(s), 6) for s in scores[valid]],
                        }
                    )
                    + "\n"
                )
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _eval_set_frame(eval_set: EvalSet, data: Interactions) -> Any:
    import polars as pl

    items = data.items.ids
    return pl.DataFrame(
        {
            "user_id": data.users.ids.gather(eval_set.users),
            "history": [items.gather(h) for h in eval_set.histories],
            "targets": [items.gather(t) for t in eval_set.targets],
            "cutoff": eval_set.cutoffs,
        }
    )


def write_prepared(path: Path, config: ExperimentConfig, prepared: Prepared) -> Path:
    """Write a prepared dataset: cleaned events, split tables, vocabularies and a report.

    The directory is built beside ``path`` and renamed into place (never half-written).
    """
    from recpilot.models.artifact import replace_dir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        (tmp / "vocab").mkdir()
        prepared.data.users.save(tmp / "vocab" / "users.parquet")
        prepared.data.items.save(tmp / "vocab" / "items.parquet")
        prepared.data.to_frame().write_parquet(tmp / "events.parquet")
        prepared.split.train.to_frame().write_parquet(tmp / "train.parquet")
        _eval_set_frame(prepared.split.validation, prepared.data).write_parquet(
            tmp / "validation.parquet"
        )
        _eval_set_frame(prepared.split.test, prepared.data).write_parquet(tmp / "test.parquet")
        if prepared.log.items is not None:
            prepared.log.items.write_parquet(tmp / "items.parquet")
        if prepared.log.users is not None:
            prepared.log.users.write_parquet(tmp / "users.parquet")
        write_json_atomic(
            tmp / "report.json",
            {
                "source": prepared.log.summary(),
                "prepared": prepared.data.describe(),
                "repairs": prepared.report.as_dict(),
                "split": {
                    "strategy": prepared.split.strategy,
                    "train_events": prepared.split.train.n_events,
                    "validation_users": len(prepared.split.validation),
                    "test_users": len(prepared.split.test),
                },
                "config": config.model_dump(mode="json"),
                "recpilot_version": __version__,
            },
        )
        replace_dir(tmp, path)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
