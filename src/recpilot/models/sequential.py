"""Sequence recommenders behind the `Recommender` contract: SASRec.

The wrapper turns `Interactions` into training batches, trains the `SASRec` module with the
`Trainer` (early stopping on the validation set given to `fit`), and scores queries from their
histories alone, so users never seen in training are served like known ones.

An empty history carries no signal for a sequence model; its scores are the training
popularity prior ``log p(item)`` (add-one smoothed), the best guess without a history and on
the same log-probability scale as the full-softmax logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from recpilot.config import EvaluationConfig, SASRecConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import EvalSet
from recpilot.errors import ArtifactError
from recpilot.models.base import Query, Recommender
from recpilot.models.nn.losses import (
    FullSoftmaxLoss,
    GBCELoss,
    InBatchSampler,
    NegativeSampler,
    SampledSoftmaxLoss,
    UniformSampler,
)
from recpilot.models.nn.sasrec import SASRec, SASRecModuleConfig
from recpilot.training.batching import SequenceBatch, SequenceBatcher, pack_right
from recpilot.training.trainer import Trainer, TrainingResult, native_bf16
from recpilot.types import FloatArray

logger = logging.getLogger(__name__)

PRIOR = "item_log_prior"

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def log_prior(data: Interactions) -> FloatArray:
    """``(I,)`` float32 ``log p(item)`` from training counts, add-one smoothed."""
    counts = data.item_counts().astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def _sampler(config: SASRecConfig, data: Interactions) -> NegativeSampler:
    samplers: dict[str, Callable[[], NegativeSampler]] = {
        "uniform": lambda: UniformSampler(data.n_items),
        "in_batch": lambda: InBatchSampler(torch.from_numpy(data.item_counts())),
    }
    return samplers[config.negative_sampler]()


def head_bf16(config: SASRecConfig) -> bool | None:
    """Whether the full loss multiplies in bf16 (None: follow the trainer's autocast)."""
    if config.head_precision == "auto":
        return True if native_bf16() else None
    return True if config.head_precision == "bf16" else None


def make_loss(config: SASRecConfig, data: Interactions) -> nn.Module:
    """The configured next-item loss (``config.loss``)."""
    losses: dict[str, Callable[[], nn.Module]] = {
        "full": lambda: FullSoftmaxLoss(bf16=head_bf16(config)),
        "sampled": lambda: SampledSoftmaxLoss(config.n_negatives, _sampler(config, data)),
        "gbce": lambda: GBCELoss(data.n_items, config.n_negatives, config.gbce_t),
    }
    return losses[config.loss]()


def sequence_loss(module: SASRec, loss: Loss, batch: SequenceBatch) -> torch.Tensor:
    """Next-item loss at every real position of a batch (padding never reaches the head).

    Args:
        module: the model.
        loss: ``(hidden (N, D), targets (N,), item_weight (I, D))`` → scalar.
        batch: right-padded sequences with targets.
    """
    hidden = module(batch.tokens, batch.lengths)  # (B, L, D)
    has_target = batch.targets >= 0  # (B, L)
    return loss(hidden[has_target], batch.targets[has_target], module.item_weight())  # (N, D)


class SASRecRecommender(Recommender):
    """SASRec next-item recommender (SASRec+ recipe by default: full softmax, all positions).

    Fitting with a validation set (``fit(train, validation)``, as the pipeline does) stops
    early on ``training.monitor`` and keeps the best epoch; without one it trains
    ``training.max_epochs`` epochs (or until ``training.max_minutes``). Selected on
    validation, it is not refitted for the test read (``refit_for_test = False``).

    Example:
        >>> model = SASRecRecommender(max_len=50).fit(split.train, split.validation)  # doctest: +SKIP
        >>> ids, scores = model.recommend(Query.from_histories([[3, 17, 4]]), k=10)  # doctest: +SKIP
    """

    name: ClassVar[str] = "sasrec"
    config_class = SASRecConfig
    config: SASRecConfig
    uses_validation: ClassVar[bool] = True
    refit_for_test: ClassVar[bool] = False

    def __init__(self, config: SASRecConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.module_: SASRec | None = None
        self.prior_: FloatArray | None = None
        self.training_: TrainingResult | None = None

    # -- training --------------------------------------------------------------------------------
    def module_config(self, n_items: int) -> SASRecModuleConfig:
        c = self.config
        return SASRecModuleConfig(
            n_items=n_items,
            max_len=c.max_len,
            d_model=c.d_model,
            n_layers=c.n_layers,
            n_heads=c.n_heads,
            d_ff=c.d_ff,
            dropout=c.dropout,
            attn_dropout=c.attn_dropout,
            positions=c.positions,
        )

    def _build_module(self, n_items: int) -> SASRec:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return SASRec(self.module_config(n_items))

    def _fit(self, data: Interactions, validation: EvalSet | None = None) -> None:
        cfg = self.config
        module = self._build_module(data.n_items)
        batcher = SequenceBatcher(
            data, cfg.max_len, cfg.training.batch_size, cfg.training.length_bucketing
        )
        if batcher.n_sequences == 0:
            from recpilot.errors import DataError

            raise DataError(
                "SASRec needs users with at least 2 events to learn from, the training data "
                "has none"
            )
        loss = make_loss(cfg, data)
        logger.info(
            "sasrec: %d sequences, %d targets per epoch, %d parameters, loss %s",
            batcher.n_sequences,
            batcher.n_targets,
            sum(p.numel() for p in module.parameters()),
            cfg.loss,
        )
        self.module_ = module
        self.prior_ = log_prior(data)
        validate = None
        if validation is not None and len(validation):
            validate = self._validator(validation)
        with self._provisionally_fitted(data):
            self.training_ = Trainer(cfg.training, module, seed=cfg.seed).fit(
                batcher, lambda batch: sequence_loss(module, loss, batch), validate
            )
        module.eval()

    @contextmanager
    def _provisionally_fitted(self, data: Interactions) -> Iterator[None]:
        """Let validation score the model while it trains (the base marks it fitted after)."""
        self.users_, self.items_ = data.users, data.items
        try:
            yield
        except BaseException:
            self.module_ = self.prior_ = None
            raise
        finally:
            self.users_ = self.items_ = None

    def _validator(self, validation: EvalSet) -> Callable[[], dict[str, float]]:
        # imported here: evaluation sits above models in the layering
        from recpilot.evaluation import Evaluator, parse_label

        _, k = parse_label(self.config.training.monitor)
        evaluator = Evaluator(
            EvaluationConfig(ks=sorted({10, k or 10}), batch_size=self.config.eval_batch_size),
            keep_recommendations=False,
            show_progress=False,
        )

        # users in order of history length: each scoring batch pads to similar lengths
        lengths = np.fromiter((len(h) for h in validation.histories), dtype=np.int64)
        order = np.argsort(np.minimum(lengths, self.config.max_len), kind="stable")
        ordered = EvalSet(
            validation.name,
            validation.users[order],
            tuple(validation.histories[i] for i in order),
            tuple(validation.targets[i] for i in order),
            validation.cutoffs[order],
        )

        def validate() -> dict[str, float]:
            result = evaluator.evaluate(self, ordered)
            return {k: v for k, v in result.metrics.items() if not k.startswith("Coverage")}

        return validate

    # -- scoring ---------------------------------------------------------------------------------
    def _score(self, query: Query) -> FloatArray:
        assert self.module_ is not None and self.prior_ is not None
        module = self.module_
        n_items = len(self.prior_)
        histories = [h[(h >= 0) & (h < n_items)] for h in query.histories]
        scores = np.empty((len(query), n_items), dtype=np.float32)
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        scores[lengths == 0] = self.prior_
        rows = np.flatnonzero(lengths > 0)
        # similar lengths together: less padding per forward pass
        rows = rows[np.argsort(-np.minimum(lengths[rows], self.config.max_len), kind="stable")]
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                step = self.config.eval_batch_size
                for lo in range(0, len(rows), step):
                    chunk = rows[lo : lo + step]
                    tokens, lens = pack_right([histories[r] for r in chunk], self.config.max_len)
                    hidden = module.last_hidden(tokens, lens)  # (b, D)
                    scores[chunk] = module.logits(hidden).float().numpy()  # (b, I)
        finally:
            module.train(was_training)
        return scores

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.module_ is not None and self.prior_ is not None
        state = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        state[PRIOR] = self.prior_
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        if PRIOR not in state:
            raise ArtifactError(f"SASRecRecommender: the weights file lacks {PRIOR!r}")
        prior = np.asarray(state.pop(PRIOR), dtype=np.float32)
        if prior.shape != (self.n_items,):
            raise ArtifactError(
                f"SASRecRecommender: {PRIOR!r} has shape {prior.shape}, expected ({self.n_items},)"
            )
        module = SASRec(self.module_config(self.n_items))
        try:
            module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        except RuntimeError as exc:
            raise ArtifactError(
                f"SASRecRecommender: the weights do not fit the configured architecture: {exc}"
            ) from exc
        self.module_ = module.eval()
        self.prior_ = prior
