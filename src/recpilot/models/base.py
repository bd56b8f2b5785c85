"""The `Recommender` contract: fit, score, recommend, save, load.

Models work on indices; external ids are converted by the `Vocabulary` objects they keep from
the training data (``users_``/``items_``), which are saved with the artefact.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import numpy as np
import torch
from pydantic import BaseModel

from recpilot.data.interactions import Interactions
from recpilot.data.vocab import Vocabulary
from recpilot.errors import NotFittedError
from recpilot.types import UNKNOWN, FloatArray, IntArray

if TYPE_CHECKING:
    from collections.abc import Callable

    from recpilot.data.split import EvalSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """A batch of users to score.

    ``users[b]`` is a training user index or -1 (unknown / anonymous); ``histories[b]`` holds the
    item indices the user interacted with, in time order. Models that need no history (popularity)
    ignore it; sequence and item-based models score from the history, so they serve users they
    never saw in training. ``timestamps`` (optional) holds the event times aligned with
    ``histories``, for models with time features (HSTU); None when unknown. ``event_types``
    (optional) holds the event type names (``"view"``, ``"cart"``, ...) aligned with
    ``histories``, for sequence models trained with event types; models trained without them
    ignore it, and a type a model never saw counts as unknown.
    """

    users: IntArray
    histories: tuple[IntArray, ...]
    timestamps: tuple[IntArray, ...] | None = None
    event_types: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "users", users)
        hist = tuple(np.asarray(h, dtype=np.int64).reshape(-1) for h in self.histories)
        object.__setattr__(self, "histories", hist)
        if len(users) != len(hist):
            raise ValueError(f"Query: {len(users)} users but {len(hist)} histories")
        if self.timestamps is not None:
            times = tuple(np.asarray(t, dtype=np.int64).reshape(-1) for t in self.timestamps)
            if [len(t) for t in times] != [len(h) for h in hist]:
                raise ValueError("Query: timestamps must have one entry per history event")
            object.__setattr__(self, "timestamps", times)
        if self.event_types is not None:
            types = tuple(np.asarray(t, dtype=object).reshape(-1) for t in self.event_types)
            if [len(t) for t in types] != [len(h) for h in hist]:
                raise ValueError("Query: event_types must have one entry per history event")
            object.__setattr__(self, "event_types", types)

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def for_users(cls, data: Interactions, users: Sequence[int] | np.ndarray) -> Query:
        """Known users with their full history (and its event times and types) in ``data``."""
        users = np.asarray(users, dtype=np.int64)
        ptr = data.user_ptr
        times = tuple(data.timestamp[ptr[u] : ptr[u + 1]] for u in users)
        names = np.asarray(data.event_types, dtype=object)[data.event_type]
        types = tuple(names[ptr[u] : ptr[u + 1]] for u in users)
        return cls(users, tuple(data.histories(users)), times, types)

    @classmethod
    def from_histories(
        cls,
        histories: Sequence[Sequence[int] | np.ndarray],
        event_types: Sequence[Sequence[str] | np.ndarray] | None = None,
    ) -> Query:
        """Anonymous users described only by their histories (and optionally the event type
        of each history event)."""
        return cls(
            np.full(len(histories), UNKNOWN, dtype=np.int64),
            tuple(np.asarray(h) for h in histories),
            event_types=None
            if event_types is None
            else tuple(np.asarray(t, dtype=object) for t in event_types),
        )

    def history_matrix(self, n_items: int) -> Any:
        """``(B, n_items)`` binary CSR matrix of the histories (indices outside range dropped)."""
        import scipy.sparse as sp

        rows = np.repeat(np.arange(len(self)), [len(h) for h in self.histories])
        cols = np.concatenate(self.histories) if len(self) else np.empty(0, dtype=np.int64)
        ok = (cols >= 0) & (cols < n_items)
        mat = sp.csr_matrix(
            (np.ones(int(ok.sum()), dtype=np.float32), (rows[ok], cols[ok])),
            shape=(len(self), n_items),
        )
        mat.data[:] = 1.0  # duplicates summed above: binary again
        return mat


def top_k(
    scores: torch.Tensor | np.ndarray,
    k: int,
    exclude: Sequence[np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[IntArray, FloatArray]:
    """Top-``k`` items per row of ``scores`` with ``torch.topk`` (no full sort).

    Args:
        scores: ``(B, I)`` scores.
        k: list length; rows with fewer eligible items are padded with index -1 and score -inf.
        exclude: per-row item indices that must not be returned (e.g. the history).
        candidates: item indices allowed for every row (others never returned).

    Returns:
        ``(ids, scores)``, each ``(B, k)``; ids are item indices, best first.
    """
    if isinstance(scores, torch.Tensor):
        s = scores.to(torch.float32).clone()
    else:  # a copy (the input may be a read-only cached row)
        s = torch.from_numpy(np.array(scores, dtype=np.float32))
    B, n_items = s.shape
    if candidates is not None:
        cand = torch.as_tensor(np.asarray(candidates, dtype=np.int64))
        allowed = torch.zeros(n_items, dtype=torch.bool)
        allowed[cand[(cand >= 0) & (cand < n_items)]] = True
        s[:, ~allowed] = -torch.inf
    if exclude is not None:
        rows = np.repeat(np.arange(B), [len(e) for e in exclude])
        cols = (
            np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude])
            if B
            else np.empty(0, np.int64)
        )
        ok = (cols >= 0) & (cols < n_items)
        s[torch.as_tensor(rows[ok]), torch.as_tensor(cols[ok])] = -torch.inf
    kk = min(k, n_items)
    vals, idx = torch.topk(s, kk, dim=1)
    ids = idx.numpy().astype(np.int64)
    out_scores = vals.numpy().astype(np.float32)
    ids[~np.isfinite(out_scores)] = UNKNOWN
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=UNKNOWN)
        out_scores = np.pad(out_scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return ids, out_scores


class Recommender(ABC):
    """Base class of every next-item recommender.

    Subclasses set ``name`` and ``config_class``, implement `_fit`, `_score`, `_state` and
    `_set_state`; the base class does validation, top-k, exclusion and persistence.
    Constructors store the config and do nothing else; learned state ends in ``_``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]
    #: `_fit` takes ``(data, validation)``: the model selects itself on a validation set (early
    #: stopping). Other models ignore a validation set passed to `fit`.
    uses_validation: ClassVar[bool] = False
    #: For the test read, refit on train + validation (baselines). Models selected on the
    #: validation set (``False``) are evaluated on test as fitted on train: their test histories
    #: include the validation event, which they read at inference.
    refit_for_test: ClassVar[bool] = True

    def __init__(self, config: BaseModel | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either a config object or keyword options, not both")
        if config is None:
            config = self.config_class(**options)
        elif not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.users_: Vocabulary | None = None
        self.items_: Vocabulary | None = None

    # -- to implement ----------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: Interactions) -> None: ...

    @abstractmethod
    def _score(self, query: Query) -> np.ndarray:
        """``(B, n_items)`` float32 scores; higher is better."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (names → arrays)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None: ...

    # -- public API ------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.items_ is not None

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.items_ is not None
        return len(self.items_)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(data) or load(path) first"
            )

    def fit(self, data: Interactions, validation: EvalSet | None = None) -> Self:
        """Learn from ``data``; returns ``self``.

        Args:
            data: training events.
            validation: users, histories and held-out targets in ``data``'s indices, for models
                that select themselves on it (``uses_validation``, e.g. early stopping);
                ignored by the others.
        """
        if data.n_events == 0:
            from recpilot.errors import DataError

            raise DataError(f"{type(self).__name__}.fit: the training data holds no events")
        # vocabularies mark the model fitted, so they are set only once _fit has succeeded
        self.users_ = self.items_ = None
        if self.uses_validation:
            fit_validated = cast("Callable[[Interactions, EvalSet | None], None]", self._fit)
            fit_validated(data, validation)
        else:
            if validation is not None:
                logger.debug("%s ignores the validation set passed to fit", self.name)
            self._fit(data)
        self.users_ = data.users
        self.items_ = data.items
        return self

    def score(self, query: Query) -> FloatArray:
        """Scores of every item for every query row, ``(B, I)`` float32."""
        self._check_fitted()
        scores = np.asarray(self._score(query), dtype=np.float32)
        expected = (len(query), self.n_items)
        if scores.shape != expected:  # pragma: no cover - guards subclasses
            raise RuntimeError(
                f"{type(self).__name__}._score returned {scores.shape}, expected {expected}"
            )
        return scores

    def recommend(
        self,
        query: Query,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` item indices and scores per query row, each ``(B, k)``.

        Args:
            query: users and/or histories.
            k: list length (rows with fewer eligible items are padded with -1 / -inf).
            exclude_seen: never return items in the row's history.
            candidates: restrict results to these item indices.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = self.score(query)
        return top_k(
            scores,
            k,
            exclude=query.histories if exclude_seen else None,
            candidates=None if candidates is None else np.asarray(candidates, dtype=np.int64),
        )

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model as an artefact directory (see `recpilot.models.artifact`)."""
        from recpilot.models.artifact import save_model

        self._check_fitted()
        return save_model(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Read an artefact directory written by `save`."""
        from recpilot.models.artifact import load_model

        model = load_model(Path(path))
        if cls is not Recommender and not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __repr__(self) -> str:
        fitted = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({self.config.model_dump_json()}, {fitted})"

    def config_json(self) -> str:
        return json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
