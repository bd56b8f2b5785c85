"""The behaviour-probability evaluation: build examples, fit models, score the test period
once, write metrics with bootstrap intervals, plots and an HTML report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recpilot.behaviour.calibration import CalibrationKind
from recpilot.behaviour.dataset import BehaviourDataset, build_dataset
from recpilot.behaviour.models import BehaviourModel, behaviour_model
from recpilot.behaviour.report import behaviour_metrics, paired_bootstrap, plot_curves, write_report
from recpilot.config import (
    BehaviourConfig,
    BSTBehaviourConfig,
    LightGBMBehaviourConfig,
    LogisticBehaviourConfig,
)
from recpilot.data.schema import EventLog
from recpilot.errors import ConfigError
from recpilot.evaluation.metrics import log_loss
from recpilot.types import IntArray

logger = logging.getLogger(__name__)

#: The clairvoyant row: each view scored with its true probability (latent state included).
BAYES = "bayes-optimal"
#: The Bayes-optimal predictor given the observable history (`recpilot.behaviour.oracle`).
BAYES_OBSERVABLE = "bayes-optimal (observable history)"
_DEFAULTS: dict[str, Any] = {
    "logistic": LogisticBehaviourConfig,
    "lightgbm": LightGBMBehaviourConfig,
    "bst": BSTBehaviourConfig,
}


def model_configs(names: Sequence[str], config: BehaviourConfig) -> list[Any]:
    """Configs of the named models: the config file's model for its own name, defaults else."""
    out = []
    for name in names:
        if name == getattr(config.model, "name", None):
            out.append(config.model)
        elif name in _DEFAULTS:
            out.append(_DEFAULTS[name]())
        else:
            raise ConfigError(f"unknown behaviour model {name!r}; known: {sorted(_DEFAULTS)}")
    return out


def select_on_validation(
    data: BehaviourDataset, candidates: Sequence[Any], calibration: CalibrationKind
) -> tuple[BehaviourModel, list[dict[str, Any]]]:
    """Fit every candidate config on the training period; keep the one with the lowest
    validation log-loss (summed over behaviours). The test period is not read.

    Returns:
        The chosen fitted model and one ``{"config", "validation_log_loss"}`` per candidate.
    """
    valid = data.rows("validation")
    best: BehaviourModel | None = None
    best_loss = np.inf
    tried: list[dict[str, Any]] = []
    for cfg in candidates:
        model = behaviour_model(cfg, calibration).fit(data)
        pred = model.predict_dataset(data, valid)
        loss = sum(log_loss(data.labels[valid, j], pred[b]) for j, b in enumerate(data.behaviours))
        tried.append({"config": cfg.model_dump(mode="json"), "validation_log_loss": loss})
        logger.info("%s candidate %s: validation log-loss %.5f", cfg.name, cfg, loss)
        if loss < best_loss:
            best, best_loss = model, loss
    if best is None:
        raise ConfigError("no candidate configs to select from")
    return best, tried


def simulator_truth(
    data: BehaviourDataset, truth: pl.DataFrame, rows: IntArray
) -> dict[str, np.ndarray]:
    """The simulator's true probabilities of the examples ``rows`` (Bayes-optimal predictions).

    Args:
        data: a dataset built from a simulator log (impression labels).
        truth: `SimulatedData.truth`, or any frame with its keys (``user_id``, ``item_id``,
            ``timestamp``) and ``p_click``, ``p_cart``, ``p_purchase`` columns, such as
            `recpilot.behaviour.oracle.observable_bayes_predictions`.
        rows: example rows.

    Returns:
        behaviour → ``(len(rows),)`` true probabilities (for behaviours the simulator knows).
    """
    ex = pl.DataFrame(
        {
            "user_id": pl.Series(data.users.lookup(data.user[rows])).cast(truth["user_id"].dtype),
            "item_id": pl.Series(data.items.lookup(data.item[rows])).cast(truth["item_id"].dtype),
            "timestamp": data.timestamp[rows],
        }
    )
    joined = ex.join(
        truth.unique(["user_id", "item_id", "timestamp"], keep="first"),
        on=["user_id", "item_id", "timestamp"],
        how="left",
        maintain_order="left",
    )
    columns = {"click": "p_click", "cart": "p_cart", "purchase": "p_purchase"}
    return {
        b: joined[columns[b]].to_numpy().astype(np.float64)
        for b in data.behaviours
        if b in columns and joined[columns[b]].null_count() == 0
    }


def run_behaviour_task(
    log: EventLog | BehaviourDataset,
    config: BehaviourConfig,
    models: Sequence[Any],
    output_dir: Path | None = None,
    *,
    reference: str | None = None,
    oracle: pl.DataFrame | None = None,
    observable_oracle: pl.DataFrame | None = None,
    save_models: bool = False,
    title: str = "Behaviour probability",
) -> dict[str, Any]:
    """Fit every model (train period), calibrate (validation period), score the test period.

    Args:
        log: an event log, or a dataset already built from one.
        config: data, calibration, threshold and bootstrap options.
        models: model configs (`LogisticBehaviourConfig`, `LightGBMBehaviourConfig`,
            `BSTBehaviourConfig`); a list of configs of one model is a grid, chosen by
            validation log-loss (`select_on_validation`).
        output_dir: where the report (``index.html``, ``report.json``, PNGs) and, with
            ``save_models``, each model (``models/NAME``) go; None writes nothing.
        reference: model whose differences to the others get bootstrap intervals.
        oracle: the simulator's truth frame, to add its true probabilities (the clairvoyant
            ``bayes-optimal`` row: it reads the users' latent state).
        observable_oracle: predictions of the Bayes-optimal predictor given the observable
            history (`recpilot.behaviour.oracle.observable_bayes_predictions`), added as the
            ``bayes-optimal (observable history)`` row; they must cover the test examples.
        save_models: save every fitted model under ``output_dir/models``.
        title: the report's title.

    Returns:
        ``{"data", "protocol", "metrics": {behaviour: {model: {...}}}, "ci": {...},
        "fit_seconds": {...}}``.
    """
    data = log if isinstance(log, BehaviourDataset) else build_dataset(log, config.data)
    test = data.rows("test")
    if len(test) == 0:
        raise ConfigError("the test period holds no examples; lower data.test_fraction's cut")
    y = data.labels[test]
    users = data.user[test]
    probs: dict[str, dict[str, np.ndarray]] = {b: {} for b in data.behaviours}
    fit_seconds: dict[str, float] = {}
    fitted: dict[str, BehaviourModel] = {}
    selection: dict[str, list[dict[str, Any]]] = {}
    for entry in models:
        start = time.perf_counter()
        if isinstance(entry, (list, tuple)):
            model, selection[entry[0].name] = select_on_validation(data, entry, config.calibration)
        else:
            model = behaviour_model(entry, config.calibration).fit(data)
        cfg: Any = model.config
        fit_seconds[cfg.name] = round(time.perf_counter() - start, 2)
        pred = model.predict_dataset(data, test)
        for b in data.behaviours:
            probs[b][cfg.name] = pred[b]
        fitted[cfg.name] = model
        if output_dir is not None and save_models:
            model.save(output_dir / "models" / cfg.name)
    if oracle is not None:
        for b, p in simulator_truth(data, oracle, test).items():
            probs[b][BAYES] = p
    if observable_oracle is not None:
        for b, p in simulator_truth(data, observable_oracle, test).items():
            probs[b][BAYES_OBSERVABLE] = p
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    cis: dict[str, Any] = {}
    images: dict[str, dict[str, str]] = {}
    for j, b in enumerate(data.behaviours):
        metrics[b] = {
            name: behaviour_metrics(y[:, j], p, users, config.threshold, config.ece_bins)
            for name, p in probs[b].items()
        }
        if config.bootstrap > 0:
            cis[b] = paired_bootstrap(
                y[:, j], probs[b], reference, config.bootstrap, seed=config.seed
            )
        if output_dir is not None:
            images[b] = plot_curves(output_dir, b, y[:, j], probs[b], config.ece_bins)
    summary = data.summary()
    results: dict[str, Any] = {
        "data": summary,
        "protocol": {
            "split": "global time split: train < validation < test by example timestamp",
            "cutoffs_ms": list(data.cutoffs),
            "calibration": f"{config.calibration}, fitted on the validation period",
            "threshold": config.threshold,
            "bootstrap": config.bootstrap,
            "model_selection": "early stopping / calibration on validation; test read once",
        },
        "metrics": metrics,
        "ci": cis,
        "fit_seconds": fit_seconds,
        "models": {name: m.config.model_dump(mode="json") for name, m in fitted.items()},
        "selection": selection,
    }
    if output_dir is not None:
        write_report(output_dir, title, results, images)
    return results
