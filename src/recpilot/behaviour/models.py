"""Behaviour-probability models behind one interface: logistic regression, LightGBM, BST.

Every `BehaviourModel`:

- ``fit(data, train_rows, validation_rows)``: fits a `FeatureEncoder` on the data, trains on
  the training rows (early stopping / model selection on the validation rows), then fits a
  `Calibrator` per behaviour on the validation rows' predictions;
- ``predict_proba(batch)`` / ``predict_dataset(data, rows)`` / ``predict_history(...)``:
  behaviour → ``(N,)`` calibrated probabilities, corrected for negative sampling;
- ``save(dir)`` / ``BehaviourModel.load(dir)``: json, safetensors and LightGBM's own text
  format; never pickle.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from safetensors.numpy import load_file, save_file
from torch import nn

from recpilot import __version__
from recpilot.behaviour.calibration import CalibrationKind, Calibrator
from recpilot.behaviour.dataset import BehaviourDataset, prior_correction
from recpilot.behaviour.features import FeatureBatch, FeatureEncoder
from recpilot.config import (
    BSTBehaviourConfig,
    LightGBMBehaviourConfig,
    LogisticBehaviourConfig,
)
from recpilot.errors import ArtifactError, ConfigError, NotFittedError
from recpilot.models.nn.embeddings import EventTypeEmbedding, ItemEmbedding, item_tokens
from recpilot.progress import progress
from recpilot.types import IntArray

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
MODEL_JSON = "model.json"
ENCODER_DIR = "features"


def _sigmoid(z: npt.ArrayLike) -> F64:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


def _standardise_stats(x: F32) -> tuple[F32, F32]:
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1], np.float32)
    std = x.std(axis=0) if len(x) else np.ones(x.shape[1], np.float32)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


class BehaviourModel(ABC):
    """Calibrated probabilities of behaviours (click, cart, purchase, like) per (user, item).

    Args:
        config: the model's pydantic config.
        calibration: ``none``, ``platt`` or ``isotonic`` (fitted on the validation rows).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]

    def __init__(self, config: Any = None, calibration: CalibrationKind = "platt") -> None:
        self.config = config if config is not None else self.config_class()
        self.calibration = calibration

    # -- the contract ----------------------------------------------------------------------------
    @property
    def behaviours(self) -> list[str]:
        self._check()
        return list(self.encoder_.behaviours_)

    @property
    def history_length(self) -> int:
        return 50

    def fit(
        self,
        data: BehaviourDataset,
        train_rows: IntArray | None = None,
        validation_rows: IntArray | None = None,
    ) -> BehaviourModel:
        """Train on ``train_rows`` (default: the training period) and calibrate on
        ``validation_rows`` (default: the validation period).

        Returns:
            self.
        """
        train_rows = data.rows("train") if train_rows is None else train_rows
        validation_rows = data.rows("validation") if validation_rows is None else validation_rows
        if len(train_rows) == 0:
            raise ValueError("no training examples: the training period is empty")
        start = time.perf_counter()
        self.encoder_ = FeatureEncoder(self.history_length).fit(data)
        train = self.encoder_.transform(data, train_rows)
        self.encoder_.set_range(train)
        valid = self.encoder_.transform(data, validation_rows)
        y_train, y_valid = data.labels[train_rows], data.labels[validation_rows]
        self._fit(train, y_train, valid, y_valid)
        raw = self._predict_raw(valid) if len(valid) else np.zeros((0, y_valid.shape[1]))
        self.calibrators_ = [
            Calibrator(self.calibration).fit(raw[:, j], y_valid[:, j])
            for j in range(y_valid.shape[1])
        ]
        self.fit_seconds_ = time.perf_counter() - start
        logger.info("%s fitted in %.1fs", self.name, self.fit_seconds_)
        return self

    def predict_proba(self, batch: FeatureBatch) -> dict[str, F64]:
        """Behaviour → ``(N,)`` calibrated probabilities, corrected for negative sampling."""
        self._check()
        raw = self._predict_raw(batch) if len(batch) else np.zeros((0, len(self.behaviours)))
        out: dict[str, F64] = {}
        for j, b in enumerate(self.behaviours):
            p = self.calibrators_[j].transform(raw[:, j])
            out[b] = np.clip(prior_correction(p, self.encoder_.sampling_rate_.get(b, 1.0)), 0, 1)
        return out

    def predict_raw(self, batch: FeatureBatch) -> F64:
        """``(N, n_behaviours)`` uncalibrated probabilities on the training data's scale."""
        self._check()
        return self._predict_raw(batch)

    def predict_dataset(
        self, data: BehaviourDataset, rows: IntArray | None = None
    ) -> dict[str, F64]:
        """`predict_proba` of a dataset's examples (item statistics as of each example)."""
        self._check()
        return self.predict_proba(self.encoder_.transform(data, rows))

    def predict_history(
        self,
        items: Sequence[Any],
        *,
        history_items: Sequence[Any] = (),
        history_event_types: Sequence[str] = (),
        history_values: Sequence[float | None] | None = None,
        history_timestamps: Sequence[int] = (),
        user_id: Any = None,
        timestamp: int | None = None,
    ) -> tuple[dict[str, F64], list[Any], list[Any]]:
        """Probabilities for candidates of one user given their history, in one batch.

        Args:
            items: candidate external item ids.
            history_items, history_event_types, history_values, history_timestamps: the
                user's events (any order; ms timestamps).
            user_id: external user id (for user side features), optional.
            timestamp: request time in ms (default: now).

        Returns:
            ``(probabilities of the known candidates, known candidate ids, unknown ids)``;
            history items the model does not know are dropped.
        """
        self._check()
        enc = self.encoder_
        # per-id look-ups: requests carry strings for int ids, and a few hundred ids at most
        cand = np.array([enc.items_.get(i) for i in items], dtype=np.int64)
        known = cand >= 0
        h_idx = np.array([enc.items_.get(i) for i in history_items], dtype=np.int64)
        keep = h_idx >= 0
        values = np.array(
            [np.nan if v is None else float(v) for v in (history_values or [None] * len(h_idx))],
            dtype=np.float64,
        )
        table = enc.history_table(
            h_idx[keep],
            [t for t, k in zip(history_event_types, keep, strict=True) if k],
            values[keep],
            np.asarray(history_timestamps, dtype=np.int64)[keep],
        )
        now = int(time.time() * 1000) if timestamp is None else int(timestamp)
        user = enc.users_.get(user_id) if user_id is not None else -1
        batch = enc.transform_history(table, user, cand[known], now)
        probs = self.predict_proba(batch)
        ids = list(items)
        return (
            probs,
            [i for i, k in zip(ids, known, strict=True) if k],
            [i for i, k in zip(ids, known, strict=True) if not k],
        )

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to the directory ``path`` (created; files replaced)."""
        self._check()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder_.save(path / ENCODER_DIR)
        state = self._save_state(path)
        spec = {
            "model": self.name,
            "config": self.config.model_dump(mode="json"),
            "calibration": self.calibration,
            "calibrators": [c.to_json() for c in self.calibrators_],
            "state": state,
            "recpilot_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (path / MODEL_JSON).write_text(json.dumps(spec, indent=2))
        return path

    @staticmethod
    def load(path: str | Path) -> BehaviourModel:
        """Read a model written by `save` (any of the kinds)."""
        path = Path(path)
        spec_file = path / MODEL_JSON
        if not spec_file.is_file():
            raise ArtifactError(f"{path} is not a behaviour model: {MODEL_JSON} is missing")
        try:
            spec = json.loads(spec_file.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{spec_file} is not valid JSON: {exc}") from exc
        cls = MODELS.get(spec.get("model", ""))
        if cls is None:
            raise ArtifactError(f"{spec_file}: unknown behaviour model {spec.get('model')!r}")
        model = cls(cls.config_class.model_validate(spec["config"]), spec["calibration"])
        model.encoder_ = FeatureEncoder.load(path / ENCODER_DIR)
        model.calibrators_ = [Calibrator.from_json(c) for c in spec["calibrators"]]
        model._load_state(path, spec["state"])
        return model

    # -- for subclasses --------------------------------------------------------------------------
    def _check(self) -> None:
        if not hasattr(self, "calibrators_"):
            raise NotFittedError(
                f"this {self.name} behaviour model is not fitted: call fit() first"
            )

    @abstractmethod
    def _fit(self, train: FeatureBatch, y_train: F32, valid: FeatureBatch, y_valid: F32) -> None:
        """Learn from features and ``(N, B)`` labels."""

    @abstractmethod
    def _predict_raw(self, batch: FeatureBatch) -> F64:
        """``(N, B)`` probabilities before calibration."""

    @abstractmethod
    def _save_state(self, path: Path) -> dict[str, Any]:
        """Write learned arrays under ``path``; return what goes into model.json."""

    @abstractmethod
    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        """Restore what `_save_state` wrote."""


# -- classical baselines --------------------------------------------------------------------------
def _design(batch: FeatureBatch, mean: F32, std: F32) -> F64:
    """Standardised numeric features and one-hot categoricals (logistic regression)."""
    parts = [((batch.numeric - mean) / std).astype(np.float64)]
    for k, card in enumerate(batch.cardinalities):
        onehot = np.zeros((len(batch), card))
        onehot[np.arange(len(batch)), np.clip(batch.categorical[:, k], 0, card - 1)] = 1.0
        parts.append(onehot)
    return np.concatenate(parts, axis=1)


class LogisticBehaviourModel(BehaviourModel):
    """L2-regularised logistic regression (scikit-learn) per behaviour on the features."""

    name = "logistic"
    config_class = LogisticBehaviourConfig
    config: LogisticBehaviourConfig

    def _fit(self, train: FeatureBatch, y_train: F32, valid: FeatureBatch, y_valid: F32) -> None:
        from sklearn.linear_model import LogisticRegression

        self.mean_, self.std_ = _standardise_stats(train.numeric)
        x = _design(train, self.mean_, self.std_)
        coefs, intercepts = [], []
        for j in range(y_train.shape[1]):
            y = y_train[:, j]
            if len(np.unique(y)) < 2:
                coefs.append(np.zeros(x.shape[1]))
                intercepts.append(float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6))))
                continue
            lr = LogisticRegression(C=self.config.c, max_iter=self.config.max_iter)
            lr.fit(x, y)
            coefs.append(lr.coef_[0].astype(np.float64))
            intercepts.append(float(lr.intercept_[0]))
        self.coef_ = np.stack(coefs, axis=1)  # (P, B)
        self.intercept_ = np.asarray(intercepts)

    def _predict_raw(self, batch: FeatureBatch) -> F64:
        return _sigmoid(_design(batch, self.mean_, self.std_) @ self.coef_ + self.intercept_)

    def _save_state(self, path: Path) -> dict[str, Any]:
        return {
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
        }

    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        self.mean_ = np.asarray(state["mean"], dtype=np.float32)
        self.std_ = np.asarray(state["std"], dtype=np.float32)


class LightGBMBehaviourModel(BehaviourModel):
    """Gradient-boosted trees (LightGBM) per behaviour, early-stopped on validation log-loss."""

    name = "lightgbm"
    config_class = LightGBMBehaviourConfig
    config: LightGBMBehaviourConfig

    @staticmethod
    def _matrix(batch: FeatureBatch) -> F64:
        return np.concatenate([batch.numeric, batch.categorical.astype(np.float32)], axis=1).astype(
            np.float64
        )

    def _fit(self, train: FeatureBatch, y_train: F32, valid: FeatureBatch, y_valid: F32) -> None:
        import lightgbm as lgb

        cfg = self.config
        names = train.numeric_names + train.categorical_names
        cats = list(range(len(train.numeric_names), len(names)))
        params = {
            "objective": "binary",
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "feature_fraction": cfg.feature_fraction,
            "lambda_l2": cfg.l2,
            "num_threads": cfg.threads,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        x_tr, x_va = self._matrix(train), self._matrix(valid)
        self.boosters_ = []
        for j in range(y_train.shape[1]):
            dtrain = lgb.Dataset(
                x_tr,
                np.ascontiguousarray(y_train[:, j]),
                feature_name=names,
                categorical_feature=cats,
                free_raw_data=False,
            )
            callbacks: list[Callable[..., Any]] = [lgb.log_evaluation(0)]
            valid_sets = []
            if len(valid) and len(np.unique(y_valid[:, j])) == 2:
                valid_sets = [
                    lgb.Dataset(x_va, np.ascontiguousarray(y_valid[:, j]), reference=dtrain)
                ]
                callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
            booster = lgb.train(
                params,
                dtrain,
                num_boost_round=cfg.n_estimators,
                valid_sets=valid_sets,
                callbacks=callbacks,
            )
            best = booster.best_iteration or booster.current_iteration()
            self.boosters_.append(
                lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
            )
            logger.info("lightgbm %s: %d trees", j, best)

    def _predict_raw(self, batch: FeatureBatch) -> F64:
        x = self._matrix(batch)
        return np.stack(
            [np.asarray(b.predict(x), dtype=np.float64) for b in self.boosters_], axis=1
        )

    def _save_state(self, path: Path) -> dict[str, Any]:
        files = []
        for j, booster in enumerate(self.boosters_):
            name = f"lightgbm_{j}.txt"
            booster.save_model(str(path / name))
            files.append(name)
        return {"files": files}

    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        import lightgbm as lgb

        self.boosters_ = [lgb.Booster(model_file=str(path / f)) for f in state["files"]]


# -- the Behaviour Sequence Transformer -----------------------------------------------------------
class BSTModule(nn.Module):
    """History + candidate → Transformer encoder → MLP with the other features → B logits.

    Args:
        n_items: catalogue size (item ``i`` is token ``i + 1``, 0 padding).
        n_tokens: history token types (event types / rating values).
        cardinalities: code counts of the categorical features.
        n_numeric: number of numeric features (standardised inside).
        n_behaviours: output heads.
        config: sizes, dropout.
    """

    num_mean: torch.Tensor
    num_std: torch.Tensor

    def __init__(
        self,
        n_items: int,
        n_tokens: int,
        cardinalities: Sequence[int],
        n_numeric: int,
        n_behaviours: int,
        config: BSTBehaviourConfig,
    ) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.n_tokens = n_tokens
        self.items = ItemEmbedding(n_items, d)
        # token n_tokens marks the candidate; unknown tokens share the table's last row
        self.tokens = EventTypeEmbedding(n_tokens + 1, d)
        self.gaps = nn.Embedding(config.gap_buckets, d)
        self.positions = nn.Embedding(config.history_length + 1, d)
        for table in (self.gaps, self.positions):
            nn.init.normal_(table.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, 4 * d, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.cats = nn.ModuleList(nn.Embedding(max(c, 1), 8) for c in cardinalities)
        self.register_buffer("num_mean", torch.zeros(n_numeric))
        self.register_buffer("num_std", torch.ones(n_numeric))
        width = 5 * d + 8 * len(cardinalities) + n_numeric
        layers: list[nn.Module] = []
        for h in config.mlp:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(config.dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.heads = nn.Linear(width, n_behaviours)

    def forward(
        self,
        item: torch.Tensor,
        hist_item: torch.Tensor,
        hist_token: torch.Tensor,
        hist_gap: torch.Tensor,
        categorical: torch.Tensor,
        numeric: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``(B, n_behaviours)``.

        Args:
            item: ``(B,)`` candidate item indices (-1 unknown).
            hist_item: ``(B, L)`` history items, right-padded with -1.
            hist_token: ``(B, L)`` token codes.
            hist_gap: ``(B, L)`` gap buckets.
            categorical: ``(B, K)`` codes.
            numeric: ``(B, F)`` raw numeric features.
        """
        b, big_l = hist_item.shape
        pad = hist_item < 0  # (B, L)
        seq_items = torch.cat([hist_item, item[:, None]], dim=1)  # (B, L+1)
        tokens = torch.cat(
            [
                torch.where(pad, self.n_tokens, hist_token.clamp(-1, self.n_tokens - 1)),
                torch.full((b, 1), self.n_tokens, dtype=torch.long, device=item.device),
            ],
            dim=1,
        )
        gaps = torch.cat([hist_gap, torch.zeros(b, 1, dtype=torch.long, device=item.device)], 1)
        lengths = (~pad).sum(dim=1, keepdim=True)  # (B, 1)
        slots = torch.arange(big_l + 1, device=item.device)[None, :]
        positions = (lengths - slots).clamp(0, big_l)  # candidate 0, the last event 1, ...
        x = self.items(item_tokens(seq_items)) + self.tokens(tokens) + self.gaps(gaps)
        x = x + self.positions(positions)  # (B, L+1, D)
        mask = torch.cat([pad, torch.zeros(b, 1, dtype=torch.bool, device=item.device)], 1)
        h = self.norm(self.encoder(x, src_key_padding_mask=mask))  # (B, L+1, D)
        cand = h[:, -1]  # (B, D): the candidate after attending to the history
        keep = (~pad).float()[:, :, None]
        pooled = (h[:, :-1] * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, D)
        cand_emb = self.items(item_tokens(item))  # (B, D)
        # element-wise products let the MLP form (weighted) dot products, which MLPs on
        # concatenations learn poorly: history taste · candidate, attended candidate · itself
        parts = [cand, pooled, cand_emb, pooled * cand_emb, cand * cand_emb]
        parts += [emb(categorical[:, k]) for k, emb in enumerate(self.cats)]
        parts.append((numeric - self.num_mean) / self.num_std)
        return torch.as_tensor(self.heads(self.mlp(torch.cat(parts, dim=1))))


def _gap_buckets(gap_s: F64, n_buckets: int) -> IntArray:
    """``floor(log2(gap seconds))`` capped to ``[0, n_buckets)``."""
    g = np.maximum(np.asarray(gap_s, dtype=np.float64), 1.0)
    return np.clip(np.floor(np.log2(g) + 1e-9), 0, n_buckets - 1).astype(np.int64)


class BSTBehaviourModel(BehaviourModel):
    """Behaviour Sequence Transformer with multi-task heads (see `BSTModule`)."""

    name = "bst"
    config_class = BSTBehaviourConfig
    config: BSTBehaviourConfig

    @property
    def history_length(self) -> int:
        return self.config.history_length

    def _tensors(self, batch: FeatureBatch) -> list[torch.Tensor]:
        return [
            torch.from_numpy(batch.item),
            torch.from_numpy(batch.hist_item),
            torch.from_numpy(batch.hist_token),
            torch.from_numpy(_gap_buckets(batch.hist_gap_s, self.config.gap_buckets)),
            torch.from_numpy(batch.categorical),
            torch.from_numpy(batch.numeric.astype(np.float32)),
        ]

    def _build(self, batch: FeatureBatch, n_behaviours: int) -> BSTModule:
        enc = self.encoder_
        return BSTModule(
            len(enc.items_),
            len(enc.tokens_),
            batch.cardinalities,
            batch.numeric.shape[1],
            n_behaviours,
            self.config,
        )

    def _warm_start(self, module: BSTModule) -> None:
        """Copy item vectors of a trained sequential artefact, matched by external id."""
        source = self.config.item_init
        if source is None:
            return
        from recpilot.data.vocab import Vocabulary

        weights_file, vocab_file = (
            Path(source) / "weights.safetensors",
            Path(source) / "vocab/items.parquet",
        )
        if not weights_file.is_file() or not vocab_file.is_file():
            raise ArtifactError(
                f"item_init {source}: expected a sequential-model artefact with "
                "weights.safetensors and vocab/items.parquet"
            )
        state = load_file(str(weights_file))
        key = next((k for k in state if k.endswith("items.table.weight")), None)
        if key is None:
            raise ArtifactError(
                f"item_init {source}: no item embedding table (items.table.weight) in its "
                "weights; is it a SASRec/BERT4Rec/HSTU artefact?"
            )
        table = state[key]
        if table.shape[1] != self.config.d_model:
            raise ConfigError(
                f"item_init {source} has {table.shape[1]}-dimensional item vectors but "
                f"d_model is {self.config.d_model}; set d_model to {table.shape[1]}"
            )
        theirs = Vocabulary.load(vocab_file, name="item")
        mine = self.encoder_.items_
        idx = theirs.index(mine.ids, missing="unknown")
        ok = np.flatnonzero(idx >= 0)
        with torch.no_grad():
            module.items.table.weight[ok + 1] = torch.from_numpy(table[idx[ok] + 1].copy())
        logger.info("warm start: %d of %d item vectors from %s", len(ok), len(mine), source)
        self.warm_started_items_ = len(ok)

    def _fit(self, train: FeatureBatch, y_train: F32, valid: FeatureBatch, y_valid: F32) -> None:
        cfg = self.config
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        module = self._build(train, y_train.shape[1])
        self._warm_start(module)
        mean, std = _standardise_stats(train.numeric)
        module.num_mean.copy_(torch.from_numpy(mean))
        module.num_std.copy_(torch.from_numpy(std))
        module.to(device)
        decay = [p for n, p in module.named_parameters() if p.ndim >= 2 and "table" not in n]
        no_decay = [
            p for n, p in module.named_parameters() if not (p.ndim >= 2 and "table" not in n)
        ]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        xs = [t.to(device) for t in self._tensors(train)]
        ys = torch.from_numpy(y_train).to(device)
        gen = torch.Generator().manual_seed(cfg.seed)
        n = len(train)
        steps = math.ceil(n / cfg.batch_size) * cfg.epochs
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1
        )
        best, best_state, bad = math.inf, None, 0
        self.history_: list[dict[str, float]] = []
        self.module_ = module
        for epoch in progress(range(cfg.epochs), desc="bst epochs", unit="epoch"):
            module.train()
            order = torch.randperm(n, generator=gen).to(device)
            total = 0.0
            for s in range(0, n, cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                logits = module(*[x[idx] for x in xs])
                loss = F.binary_cross_entropy_with_logits(logits, ys[idx], reduction="none")
                loss = loss.mean(dim=0).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            record = {"epoch": float(epoch + 1), "train_loss": total / n}
            if len(valid):
                raw = self._predict_raw(valid)
                p = np.clip(raw, 1e-7, 1 - 1e-7)
                ll = -np.mean(y_valid * np.log(p) + (1 - y_valid) * np.log1p(-p), axis=0).sum()
                record["valid_logloss"] = float(ll)
                if ll < best - 1e-5:
                    best, bad = float(ll), 0
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    bad += 1
            self.history_.append(record)
            logger.info("bst epoch %d: %s", epoch + 1, record)
            if len(valid) and bad >= cfg.patience:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()

    @torch.no_grad()
    def _predict_raw(self, batch: FeatureBatch) -> F64:
        module = self.module_
        was = module.training
        module.eval()
        device = next(module.parameters()).device
        xs = self._tensors(batch)
        out = []
        for s in range(0, len(batch), 4096):
            logits = module(*[x[s : s + 4096].to(device) for x in xs])
            out.append(torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64))
        module.train(was)
        return np.concatenate(out) if out else np.zeros((0, module.heads.out_features))

    def _save_state(self, path: Path) -> dict[str, Any]:
        state = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        save_file(
            {k: np.ascontiguousarray(v) for k, v in state.items()},
            str(path / "weights.safetensors"),
        )
        return {
            "weights": "weights.safetensors",
            "n_behaviours": int(self.module_.heads.out_features),
            "history": getattr(self, "history_", []),
        }

    def _load_state(self, path: Path, state: dict[str, Any]) -> None:
        enc = self.encoder_
        module = BSTModule(
            len(enc.items_),
            len(enc.tokens_),
            enc.cardinalities,
            len(enc.numeric_names),
            int(state["n_behaviours"]),
            self.config.model_copy(update={"item_init": None}),
        )
        weights = load_file(str(path / state["weights"]))
        module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        module.eval()
        self.module_ = module
        self.history_ = state.get("history", [])


MODELS: dict[str, type[BehaviourModel]] = {
    m.name: m for m in (LogisticBehaviourModel, LightGBMBehaviourModel, BSTBehaviourModel)
}


def behaviour_model(config: Any, calibration: CalibrationKind = "platt") -> BehaviourModel:
    """The model a behaviour model config names (``logistic``, ``lightgbm`` or ``bst``)."""
    cls = MODELS.get(getattr(config, "name", ""))
    if cls is None:
        raise ConfigError(f"unknown behaviour model {config!r}; known: {sorted(MODELS)}")
    return cls(config, calibration)
