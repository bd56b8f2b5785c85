"""Sequence recommenders behind the `Recommender` contract: SASRec, BERT4Rec, HSTU.

The wrapper turns `Interactions` into training batches, trains the `SASRec` module with the
`Trainer` (early stopping on the validation set given to `fit`), and scores queries from their
histories alone, so users never seen in training are served like known ones.

An empty history carries no signal for a sequence model; its scores are the training
popularity prior ``log p(item)`` (add-one smoothed), the best guess without a history and on
the same log-probability scale as the full-softmax logits.

The three models share the item table, the tied head, the losses and the negative samplers
(chosen by the same config fields), so they compare on equal terms; a subclass changes only
the module (`_make_module`), the training loss of a batch (`_batch_loss`) and the query
encoder (`_hidden`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from recpilot.config import BERT4RecConfig, EvaluationConfig, HSTUConfig, SASRecConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import EvalSet
from recpilot.errors import ArtifactError, DataError
from recpilot.models.base import Query, Recommender
from recpilot.models.nn.bert4rec import BERT4Rec, BERT4RecModuleConfig, mask_positions
from recpilot.models.nn.embeddings import HybridItemEmbedding, ItemEmbedding
from recpilot.models.nn.freshness import NEVER, ItemFreshness
from recpilot.models.nn.hstu import HSTU, HSTUModuleConfig
from recpilot.models.nn.losses import (
    FullSoftmaxLoss,
    GBCELoss,
    InBatchSampler,
    NegativeSampler,
    SampledSoftmaxLoss,
    UniformSampler,
)
from recpilot.models.nn.sasrec import SASRec, SASRecModuleConfig
from recpilot.training.batching import SequenceBatch, SequenceBatcher, pack_right, pack_times
from recpilot.training.trainer import Trainer, TrainingResult, native_bf16
from recpilot.types import FloatArray, IntArray

logger = logging.getLogger(__name__)

PRIOR = "item_log_prior"
#: weights-file entry of the event types a model reads: UTF-8 JSON list of names (uint8)
EVENT_TYPES = "event_type_vocab"

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
        batch: right-padded sequences with targets (and event types, when the model reads
            them).
    """
    hidden = module(batch.tokens, batch.lengths, batch.event_types)  # (B, L, D)
    has_target = batch.targets >= 0  # (B, L)
    return loss(hidden[has_target], batch.targets[has_target], module.item_weight())  # (N, D)


def _items(module: nn.Module) -> ItemEmbedding:
    """The item table (and tied head) every sequence module keeps as ``module.items``."""
    items = module.items
    assert isinstance(items, ItemEmbedding)
    return items


def first_seen_times(data: Interactions) -> IntArray:
    """``(I,)`` int64 time of each item's first event in ``data`` (`NEVER` for none)."""
    first = np.full(data.n_items, NEVER, dtype=np.int64)
    np.minimum.at(first, data.item_idx, data.timestamp.astype(np.int64))
    return first


def _freshness(module: nn.Module) -> ItemFreshness | None:
    """The module's item-age bias (``freshness``), or None when it has none."""
    fresh = getattr(module, "freshness", None)
    return fresh if isinstance(fresh, ItemFreshness) else None


def text_only_weight(items: HybridItemEmbedding) -> torch.Tensor:
    """``(I, D)`` hybrid item vectors without their ID part (unknown-ID vector + text)."""
    text: torch.Tensor = items.text
    return items.unknown_id + items.text_proj(text[1:])


def module_device(module: nn.Module) -> torch.device:
    """Where the module's parameters are (the device its inputs must be on)."""
    return next(module.parameters()).device


def _packed(types: list[np.ndarray] | None, tokens: torch.Tensor) -> torch.Tensor | None:
    """Event-type codes laid out like ``tokens`` (from `pack_right`), on its device."""
    if types is None:
        return None
    return pack_times(types, tokens.shape[1]).to(tokens.device)


_C = TypeVar("_C")


def module_config_from(
    config: Any, config_class: type[_C], n_items: int, n_event_types: int = 0
) -> _C:
    """An architecture dataclass whose fields (besides ``n_items`` and ``n_event_types``, which
    come from the data) are read from the model config's fields of the same names — one
    mapping for every sequence model."""
    dataclass_type: Any = config_class
    learned = {"n_items", "n_event_types"}
    names = [f.name for f in dataclasses.fields(dataclass_type) if f.name not in learned]
    built: _C = dataclass_type(
        n_items=n_items,
        n_event_types=n_event_types,
        **{name: getattr(config, name) for name in names},
    )
    return built


def learn_event_types(data: Interactions, setting: bool | None) -> tuple[str, ...] | None:
    """The event types a model reads, in code order (code ``j + 1`` is ``types[j]``).

    Args:
        data: the training events.
        setting: the config's ``event_types``: True / False, or None (on when ``data`` has
            more than one event type).

    Returns:
        The names of the event types present in ``data``, or None when the model reads none.
    """
    if setting is False:
        return None
    present = np.unique(data.event_type)
    if setting is None and len(present) < 2:
        return None
    return tuple(str(data.event_types[c]) for c in present)


def event_type_codes(vocabulary: Sequence[str], names: Sequence[np.ndarray]) -> list[IntArray]:
    """Event type names → a model's codes (``1..n``; -1 for a type it never saw).

    Args:
        vocabulary: the model's event types (`learn_event_types`).
        names: per row, the type name of every event.

    Returns:
        Per row, ``int64`` codes aligned with ``names``.
    """
    lengths = [len(t) for t in names]
    if not sum(lengths):
        return [np.empty(0, dtype=np.int64) for _ in names]
    flat = np.concatenate([np.asarray(t, dtype=object) for t in names])
    uniques, inverse = np.unique(flat.astype(str), return_inverse=True)
    lookup = {name: code for code, name in enumerate(vocabulary, start=1)}
    codes = np.fromiter((lookup.get(str(u), -1) for u in uniques), np.int64, len(uniques))
    return np.split(codes[inverse.reshape(-1)], np.cumsum(lengths)[:-1])


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
        self.module_: nn.Module | None = None
        self.prior_: FloatArray | None = None
        self.training_: TrainingResult | None = None
        #: event types the model reads (code ``j + 1`` is ``event_types_[j]``); None: none
        self.event_types_: tuple[str, ...] | None = None
        #: ``(I, T)`` item text vectors in training-vocabulary order (``text_features``)
        self.text_vectors: FloatArray | None = None
        #: ``(I,)`` item release / catalogue addition times (``freshness``; `NEVER`: unknown)
        self.item_times: IntArray | None = None
        #: weights the next fit starts from (`init_from`: transfer from another catalogue)
        self.init_state: dict[str, torch.Tensor] | None = None

    def set_text_vectors(self, vectors: np.ndarray) -> Any:
        """Item text vectors ``(I, T)`` in the training data's item order, for
        ``text_features`` (see `recpilot.content.catalogue_vectors`); returns ``self``."""
        self.text_vectors = np.asarray(vectors, dtype=np.float32)
        return self

    def set_item_times(self, times: np.ndarray) -> Any:
        """Item release or catalogue addition times ``(I,)`` in the training data's item
        order and clock (`NEVER` where unknown), for ``freshness``: an item's age counts from
        the earlier of this time and its first training event (see
        `recpilot.content.text.item_release_times`); returns ``self``."""
        self.item_times = np.asarray(times, dtype=np.int64).reshape(-1)
        return self

    def init_from(self, other: SASRecRecommender) -> Any:
        """Start the next ``fit`` from ``other``'s weights, except its catalogue-specific item
        table (transfer, e.g. pre-trained on one dataset, fine-tuned on another whose items
        share a text space); returns ``self``.

        Raises:
            DataError: ``other`` is not fitted or is another kind of model.
        """
        if other.module_ is None or type(other) is not type(self):
            raise DataError(
                f"init_from needs a fitted {type(self).__name__}, got "
                f"{'an unfitted' if other.module_ is None else 'a'} {type(other).__name__}"
            )
        # per-item tables, and the event types (each dataset has its own)
        catalogue = {"items.table.weight", "items.text", "items.has_id", "types.table.weight"}
        catalogue |= {"freshness.first_seen", "freshness.clock"}  # this catalogue's item times
        self.init_state = {
            k: v.detach().cpu().clone()
            for k, v in other.module_.state_dict().items()
            if k not in catalogue
        }
        return self

    # -- training --------------------------------------------------------------------------------
    @property
    def n_event_types(self) -> int:
        """Event types the model reads (0: none)."""
        return len(self.event_types_ or ())

    def module_config(self, n_items: int) -> SASRecModuleConfig:
        return module_config_from(self.config, SASRecModuleConfig, n_items, self.n_event_types)

    def _make_module(self, n_items: int) -> nn.Module:
        """The untrained module for a catalogue of ``n_items`` (seeded by the caller)."""
        return SASRec(self.module_config(n_items))

    def _build_module(self, n_items: int, data: Interactions | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            module = self._make_module(n_items)
            if self.config.text_features:
                assert data is not None
                self._attach_text(module, self._checked_text(data), data.item_counts() > 0)
            if self.config.freshness:
                assert data is not None
                if isinstance(module, BERT4Rec):
                    raise DataError(
                        "freshness needs a next-item model (sasrec, hstu), not bert4rec"
                    )
                clock = int(data.timestamp.max()) if len(data) else 0
                first = first_seen_times(data)
                if self.item_times is not None:
                    if self.item_times.shape != (data.n_items,):
                        raise DataError(
                            f"{type(self).__name__}: item times must have one entry per "
                            f"training item, expected ({data.n_items},), got "
                            f"{self.item_times.shape}"
                        )
                    first = np.minimum(first, self.item_times)
                self._attach_freshness(module, first, clock)
            if self.init_state is not None:
                own = module.state_dict()
                bad = [
                    k for k, v in self.init_state.items() if k not in own or own[k].shape != v.shape
                ]
                if bad:
                    raise DataError(
                        f"init_from: the pre-trained weights do not fit this architecture "
                        f"(e.g. {bad[:3]}); use the same d_model, layers, heads and max_len"
                    )
                module.load_state_dict(self.init_state, strict=False)
            return module

    def _checked_text(self, data: Interactions) -> FloatArray:
        if self.text_vectors is None:
            raise DataError(
                f"{type(self).__name__} with text_features needs item text vectors: call "
                "set_text_vectors(vectors) with one row per training item before fit"
            )
        vectors = np.asarray(self.text_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != data.n_items:
            raise DataError(
                f"{type(self).__name__}: text vectors must have one row per training item, "
                f"expected ({data.n_items}, T), got {vectors.shape}"
            )
        return vectors

    def _attach_text(self, module: nn.Module, text: np.ndarray, has_id: np.ndarray) -> None:
        """Swap the module's item table for a `HybridItemEmbedding` (ID + projected text)."""
        items = _items(module)
        hybrid = HybridItemEmbedding(
            items.n_items,
            items.d_model,
            torch.from_numpy(np.asarray(text, dtype=np.float32)),
            torch.from_numpy(np.asarray(has_id, dtype=bool)),
            id_dropout=self.config.id_dropout,
            scale=items.factor != 1.0,
        )
        with torch.no_grad():
            hybrid.table.weight.copy_(items.table.weight)
        module.items = hybrid

    def _attach_freshness(self, module: nn.Module, first_seen: np.ndarray, clock: int) -> None:
        """Give the module an `ItemFreshness` head bias (``module.freshness``)."""
        module.freshness = ItemFreshness(
            torch.from_numpy(np.asarray(first_seen, dtype=np.int64)),
            self.config.freshness_buckets,
            clock,
        )

    @property
    def text_dim(self) -> int | None:
        """Size of the text vectors a fitted hybrid model reads; None when it cannot grow its
        catalogue from text (ID-only, BERT4Rec, not fitted)."""
        if self.module_ is None or isinstance(self.module_, BERT4Rec):
            return None
        items = _items(self.module_)
        if not isinstance(items, HybridItemEmbedding):
            return None
        text: torch.Tensor = items.text
        return int(text.shape[1])

    def add_items(
        self, item_ids: list[Any], vectors: np.ndarray, added_at: int | None = None
    ) -> IntArray:
        """Make items recommendable from their text alone, without retraining.

        New ids are appended to the vocabulary (zero ID embedding, the given text vector, the
        smallest popularity prior); known ids get their text vector replaced. Needs
        ``text_features``. Returns the items' indices.

        With ``freshness``, an item never seen before is "new" (age ≈ 0) at any query time;
        ``added_at`` (the catalogue addition time, in the training clock's unit) makes the
        items not seen yet count as first seen then, so they age from that time on.
        """
        self._check_fitted()
        assert self.module_ is not None and self.prior_ is not None and self.items_ is not None
        items = _items(self.module_)
        if not isinstance(items, HybridItemEmbedding):
            raise DataError(
                f"{type(self).__name__}.add_items needs a model trained with text_features: "
                "true (an ID-only model cannot represent an item it never saw)"
            )
        if isinstance(self.module_, BERT4Rec):
            raise DataError("BERT4Rec cannot grow its catalogue after training ([MASK] token)")
        text: torch.Tensor = items.text
        vecs = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).reshape(len(item_ids), -1)
        if vecs.shape[1] != text.shape[1]:
            raise DataError(
                f"add_items: text vectors have {vecs.shape[1]} dimensions, the model was "
                f"trained with {text.shape[1]}"
            )
        old_n = len(self.items_)
        try:
            vocab = self.items_.extend(list(item_ids))
        except Exception as exc:  # polars cannot cast the ids to the vocabulary's type
            raise DataError(
                f"add_items: item ids {list(item_ids)[:3]} do not fit this model's "
                f"{self.items_.dtype} item ids ({exc})"
            ) from exc
        idx = vocab.index(list(item_ids))
        grow = len(vocab) - old_n
        fresh = _freshness(self.module_)
        if grow:
            items.add_items(torch.zeros(grow, vecs.shape[1]))
            if fresh is not None:
                fresh.add_items(torch.full((grow,), NEVER, dtype=torch.int64))
            self.prior_ = np.concatenate(
                [self.prior_, np.full(grow, self.prior_.min(), dtype=np.float32)]
            )
        items.set_text(torch.as_tensor(np.array(idx)), vecs)
        self.items_ = vocab
        if fresh is not None and added_at is not None:
            self.observe_items(idx, np.full(len(idx), int(added_at), dtype=np.int64))
        return idx

    def observe_items(self, items: np.ndarray, first_seen: np.ndarray) -> None:
        """Record when items the model has not seen yet were first seen or added to the
        catalogue (``freshness``), e.g. from the events logged since training.

        Items seen earlier keep their time; the model's clock (the query time of a query
        without later events) moves to the latest time recorded. Without ``freshness`` this
        does nothing.

        Args:
            items: ``(n,)`` item indices.
            first_seen: ``(n,)`` their first-seen (or catalogue addition) times, in the
                training clock's unit.
        """
        self._check_fitted()
        assert self.module_ is not None
        fresh = _freshness(self.module_)
        if fresh is None:
            return
        rows = torch.tensor(np.asarray(items, dtype=np.int64).reshape(-1))
        times = torch.tensor(np.asarray(first_seen, dtype=np.int64).reshape(-1))
        if len(rows) != len(times) or (
            len(rows) and not 0 <= int(rows.min()) <= int(rows.max()) < fresh.n_items
        ):
            raise DataError(
                f"observe_items: need one time per item index in [0, {fresh.n_items}), got "
                f"{len(rows)} indices and {len(times)} times"
            )
        new = fresh.first_seen[rows] > times  # an earlier first sighting stands
        fresh.set_first_seen(rows[new], times[new])

    def _input_len(self) -> int:
        """Input positions per training sample (the batcher's ``max_len``)."""
        return self.config.max_len

    def _batch_loss(self, module: nn.Module, loss: Loss, batch: SequenceBatch) -> torch.Tensor:
        """Scalar training loss of one batch (SASRec: next item at every position)."""
        assert isinstance(module, SASRec)
        if _freshness(module) is None:
            return sequence_loss(module, loss, batch)
        hidden = module(batch.tokens, batch.lengths, batch.event_types)  # (B, L, D)
        return self._head_loss(module, loss, hidden, batch)

    def _head_loss(
        self, module: nn.Module, loss: Loss, hidden: torch.Tensor, batch: SequenceBatch
    ) -> torch.Tensor:
        """The next-item loss of every position with a target, from ``(B, L, D)`` outputs.

        With ``freshness`` the full softmax takes the item-age bias, each position's query
        time being its input event's time (items first seen at or after it are "new").
        """
        has_target = batch.targets >= 0  # (B, L)
        targets = batch.targets[has_target]  # (N,)
        fresh = _freshness(module)
        if fresh is None:
            return loss(hidden[has_target], targets, _items(module).item_weight)
        if batch.timestamps is None:
            raise DataError("freshness needs event times in the training batches")
        items = _items(module)
        assert isinstance(items, HybridItemEmbedding)
        return fresh.loss(
            hidden[has_target],
            targets,
            items.item_weight,
            text_only_weight(items),
            batch.timestamps[has_target],
        )

    def _head_logits(
        self, module: nn.Module, hidden: torch.Tensor, times: list[np.ndarray] | None
    ) -> torch.Tensor:
        """``(b, I)`` scores of ``b`` query vectors; with ``freshness`` the query time of a row
        is the later of its last history event's time and the model's clock (the last training
        event, or the latest time `observe_items` recorded): a model is queried after what it
        knows. ``text_only_boost`` is added to the items known from their text alone."""
        items = _items(module)
        fresh = _freshness(module)
        if fresh is None:
            logits = items.logits(hidden)
        else:
            assert isinstance(items, HybridItemEmbedding)
            clock = int(fresh.clock)
            now = torch.full((len(hidden),), clock, dtype=torch.int64)
            if times is not None:
                for row, t in enumerate(times):
                    if len(t):
                        now[row] = max(clock, int(t[-1]))
            now = now.to(hidden.device)
            logits = fresh.logits(hidden, items.item_weight, text_only_weight(items), now)
        boost = self.config.text_only_boost
        if boost and isinstance(items, HybridItemEmbedding):
            has_id: torch.Tensor = items.has_id
            logits = logits + torch.where(has_id[1:], 0.0, boost).to(logits.dtype)
        return logits

    def _hidden(
        self,
        module: nn.Module,
        histories: list[np.ndarray],
        times: list[np.ndarray] | None,
        types: list[np.ndarray] | None = None,
    ) -> torch.Tensor:
        """``(b, D)`` next-item query vectors of ``b`` non-empty histories (inference mode).

        Args:
            module: the trained module.
            histories: item indices per row, in time order.
            times: event times aligned with ``histories``, or None when unknown.
            types: the model's event-type codes aligned with ``histories`` (see
                `event_type_codes`), or None when unknown.
        """
        assert isinstance(module, SASRec)
        tokens, lens = pack_right(histories, self._input_len())
        device = module_device(module)
        return module.last_hidden(tokens.to(device), lens.to(device), _packed(types, tokens))

    def _fit(self, data: Interactions, validation: EvalSet | None = None) -> None:
        cfg = self.config
        self.event_types_ = learn_event_types(data, cfg.event_types)
        module = self._build_module(data.n_items, data)
        codes = None
        if self.event_types_ is not None:
            lut = np.zeros(len(data.event_types), dtype=np.int64)
            lut[[data.event_types.index(t) for t in self.event_types_]] = np.arange(
                1, len(self.event_types_) + 1
            )
            codes = lut[data.event_type]  # (N,) the model's codes, 1..n
        batcher = SequenceBatcher(
            data,
            self._input_len(),
            cfg.training.batch_size,
            cfg.training.length_bucketing,
            event_types=codes,
            pad_multiple=cfg.training.pad_multiple,
        )
        if batcher.n_sequences == 0:
            raise DataError(
                f"{type(self).__name__} needs users with at least 2 events to learn from, the "
                "training data has none"
            )
        fresh = _freshness(module)
        if fresh is not None:
            self._init_freshness(fresh, data, batcher)
        loss = make_loss(cfg, data)
        logger.info(
            "%s: %d sequences, %d targets per epoch, %d parameters, loss %s, event types %s",
            self.name,
            batcher.n_sequences,
            batcher.n_targets,
            sum(p.numel() for p in module.parameters()),
            cfg.loss,
            "off" if self.event_types_ is None else list(self.event_types_),
        )
        self.module_ = module
        self.prior_ = log_prior(data)
        validate = None
        if validation is not None and len(validation):
            validate = self._validator(validation)
        with self._provisionally_fitted(data):
            self.training_ = Trainer(cfg.training, module, seed=cfg.seed).fit(
                batcher, lambda batch: self._batch_loss(module, loss, batch), validate
            )
        module.eval()

    def _init_freshness(
        self, fresh: ItemFreshness, data: Interactions, batcher: SequenceBatcher
    ) -> None:
        """Start the item-age bias from the statistics of (up to 20,000 of) the positions the
        batcher trains on: query time = input event time, target = next event."""
        inputs = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(batcher.starts, batcher.lengths, strict=True)]
        )
        if len(inputs) > 20_000:
            rng = np.random.default_rng(self.config.seed)
            inputs = rng.choice(inputs, 20_000, replace=False)
        times = torch.from_numpy(data.timestamp[inputs].astype(np.int64))
        targets = torch.from_numpy(data.item_idx[inputs + 1].astype(np.int64))
        fresh.init_bias(times, targets)
        logger.info(
            "%s: item-age bias from %d positions: %s",
            self.name,
            len(inputs),
            np.round(fresh.bias.detach().numpy(), 2).tolist(),
        )

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
            None
            if validation.history_times is None
            else tuple(validation.history_times[i] for i in order),
            None
            if validation.history_event_types is None
            else tuple(validation.history_event_types[i] for i in order),
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
        known = [(h >= 0) & (h < n_items) for h in query.histories]
        histories = [h[ok] for h, ok in zip(query.histories, known, strict=True)]
        times = None
        if query.timestamps is not None:
            times = [t[ok] for t, ok in zip(query.timestamps, known, strict=True)]
        types = None
        if self.event_types_ is not None and query.event_types is not None:
            types = event_type_codes(
                self.event_types_, [t[ok] for t, ok in zip(query.event_types, known, strict=True)]
            )
        scores = np.empty((len(query), n_items), dtype=np.float32)
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        scores[lengths == 0] = self.prior_
        rows = np.flatnonzero(lengths > 0)
        # similar lengths together: less padding per forward pass
        rows = rows[np.argsort(-np.minimum(lengths[rows], self.config.max_len), kind="stable")]
        was_training = module.training
        if was_training:  # train()/eval() walk every submodule: only when it changes something
            module.eval()
        try:
            with torch.inference_mode():
                step = self.config.eval_batch_size
                for lo in range(0, len(rows), step):
                    chunk = rows[lo : lo + step]
                    hidden = self._hidden(
                        module,
                        [histories[r] for r in chunk],
                        None if times is None else [times[r] for r in chunk],
                        None if types is None else [types[r] for r in chunk],
                    )  # (b, D)
                    logits = self._head_logits(
                        module, hidden, None if times is None else [times[r] for r in chunk]
                    )  # (b, I)
                    scores[chunk] = logits.float().cpu().numpy()
        finally:
            if was_training:
                module.train()
        return scores

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.module_ is not None and self.prior_ is not None
        state = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        state[PRIOR] = self.prior_
        if self.event_types_ is not None:
            names = json.dumps(list(self.event_types_)).encode("utf-8")
            state[EVENT_TYPES] = np.frombuffer(names, dtype=np.uint8).copy()
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        if PRIOR not in state:
            raise ArtifactError(f"{type(self).__name__}: the weights file lacks {PRIOR!r}")
        prior = np.asarray(state.pop(PRIOR), dtype=np.float32)
        # artefacts written before event types were an input have no such entry: no types
        names = state.pop(EVENT_TYPES, None)
        self.event_types_ = None
        if names is not None:
            try:
                decoded = json.loads(np.asarray(names, dtype=np.uint8).tobytes().decode("utf-8"))
            except ValueError as exc:
                raise ArtifactError(
                    f"{type(self).__name__}: {EVENT_TYPES!r} is not a JSON list: {exc}"
                ) from exc
            self.event_types_ = tuple(str(t) for t in decoded)
        if prior.shape != (self.n_items,):
            raise ArtifactError(
                f"{type(self).__name__}: {PRIOR!r} has shape {prior.shape}, expected "
                f"({self.n_items},)"
            )
        module = self._make_module(self.n_items)
        text = state.get("items.text")
        if self.config.text_features and text is not None:
            # the saved buffers replace these placeholders of the right shapes
            t = np.zeros((self.n_items, np.asarray(text).shape[1]), dtype=np.float32)
            self._attach_text(module, t, np.zeros(self.n_items, dtype=bool))
        if self.config.freshness and "freshness.first_seen" in state:
            # placeholders again: the saved first-seen times, clock and bias replace them
            self._attach_freshness(module, np.zeros(self.n_items, dtype=np.int64), 0)
        try:
            module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        except RuntimeError as exc:
            raise ArtifactError(
                f"{type(self).__name__}: the weights do not fit the configured architecture: {exc}"
            ) from exc
        self.module_ = module.eval()
        self.prior_ = prior


def masked_item_loss(
    module: BERT4Rec, loss: Loss, batch: SequenceBatch, mask_prob: float
) -> torch.Tensor:
    """BERT4Rec's cloze loss: hide random positions behind ``[MASK]`` and predict their items.

    The batch holds next-item pairs of ``max_len - 1`` inputs; the whole sequence is its first
    input followed by every target, so one batcher serves both training styles.

    Args:
        module: the model.
        loss: ``(hidden (N, D), targets (N,), item_weight (I, D))`` → scalar.
        batch: right-padded sequences with next-item targets.
        mask_prob: share of real positions masked (at least one per row, never padding).
    """
    rest = (batch.targets + 1).clamp_min(0)  # (B, L): target tokens, -1 → padding
    tokens = torch.cat([batch.tokens[:, :1], rest], dim=1)  # (B, L + 1) whole sequences
    types = None
    if batch.event_types is not None and batch.target_event_types is not None:
        types = torch.cat([batch.event_types[:, :1], batch.target_event_types], dim=1)
    lengths = batch.lengths + 1
    masked = mask_positions(lengths, tokens.shape[1], mask_prob)  # (B, L + 1)
    # (the module hides the event type of a masked slot as well)
    hidden = module(torch.where(masked, module.mask_token, tokens), lengths, types)
    return loss(hidden[masked], tokens[masked] - 1, module.item_weight())


class BERT4RecRecommender(SASRecRecommender):
    """BERT4Rec next-item recommender: bidirectional blocks, masked-item training.

    Same embeddings, losses, samplers, trainer and scoring path as `SASRecRecommender`; the
    next-item query is the output at a ``[MASK]`` appended after the history.
    """

    name: ClassVar[str] = "bert4rec"
    config_class = BERT4RecConfig
    config: BERT4RecConfig

    def module_config(self, n_items: int) -> BERT4RecModuleConfig:  # type: ignore[override]
        return module_config_from(self.config, BERT4RecModuleConfig, n_items, self.n_event_types)

    def _make_module(self, n_items: int) -> nn.Module:
        return BERT4Rec(self.module_config(n_items))

    def _input_len(self) -> int:
        return self.config.max_len - 1  # one slot for the [MASK] query

    def _batch_loss(self, module: nn.Module, loss: Loss, batch: SequenceBatch) -> torch.Tensor:
        assert isinstance(module, BERT4Rec)
        return masked_item_loss(module, loss, batch, self.config.mask_prob)

    def _hidden(
        self,
        module: nn.Module,
        histories: list[np.ndarray],
        times: list[np.ndarray] | None,
        types: list[np.ndarray] | None = None,
    ) -> torch.Tensor:
        assert isinstance(module, BERT4Rec)
        tokens, lens = pack_right(histories, self._input_len())
        device = module_device(module)
        return module.last_hidden(tokens.to(device), lens.to(device), _packed(types, tokens))


class HSTURecommender(SASRecRecommender):
    """HSTU-style generative recommender: causal HSTU blocks with relative position/time bias.

    Same embeddings, losses, samplers, trainer and scoring path as `SASRecRecommender`.
    Training reads event times from the `Interactions` (hiding them for ``time_dropout`` of
    the sequences); scoring uses ``Query.timestamps`` when given (``Query.for_users`` and the
    evaluator's ``EvalSet.history_times`` fill them), else the learned "unknown time" bias.
    """

    name: ClassVar[str] = "hstu"
    config_class = HSTUConfig
    config: HSTUConfig

    def module_config(self, n_items: int) -> HSTUModuleConfig:  # type: ignore[override]
        return module_config_from(self.config, HSTUModuleConfig, n_items, self.n_event_types)

    def _make_module(self, n_items: int) -> nn.Module:
        return HSTU(self.module_config(n_items))

    def _batch_loss(self, module: nn.Module, loss: Loss, batch: SequenceBatch) -> torch.Tensor:
        assert isinstance(module, HSTU)
        times = batch.timestamps  # (B, L) or None
        p = self.config.time_dropout
        if times is not None and p > 0:
            hide = torch.rand(len(batch), device=batch.tokens.device) < p  # (B,)
            times = torch.where(hide[:, None], -1, times)
        hidden = module(batch.tokens, batch.lengths, times, batch.event_types)  # (B, L, D)
        return self._head_loss(module, loss, hidden, batch)

    def _hidden(
        self,
        module: nn.Module,
        histories: list[np.ndarray],
        times: list[np.ndarray] | None,
        types: list[np.ndarray] | None = None,
    ) -> torch.Tensor:
        assert isinstance(module, HSTU)
        tokens, lens = pack_right(histories, self.config.max_len)
        stamps = None if times is None else pack_times(times, self.config.max_len)
        device = module_device(module)
        return module.last_hidden(
            tokens.to(device),
            lens.to(device),
            None if stamps is None else stamps.to(device),
            _packed(types, tokens),
        )
