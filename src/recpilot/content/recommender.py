"""Content-only recommender: nearest neighbours in item-text space (`TextKNNRecommender`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from recpilot.config import TextKNNConfig
from recpilot.data.interactions import Interactions
from recpilot.errors import ArtifactError, DataError
from recpilot.models.base import Query, Recommender
from recpilot.types import FloatArray, IntArray

TEXT = "item_text_vectors"
COUNTS = "item_counts"


def check_text_vectors(vectors: np.ndarray, n_items: int, who: str) -> FloatArray:
    """``(n_items, T)`` float32 copy of ``vectors``, or a `DataError` naming the mismatch."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n_items:
        raise DataError(
            f"{who}: text vectors must have one row per item of the training vocabulary, "
            f"expected ({n_items}, T), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{who}: text vectors hold NaN or infinite values")
    return arr.copy()


class TextKNNRecommender(Recommender):
    """Scores every item by the cosine between its text vector and the history's mean vector.

    Needs item text vectors aligned with the training vocabulary, given with
    `set_text_vectors` before ``fit`` (e.g. from `recpilot.content.catalogue_vectors`).
    An empty history gets the training popularity (log counts, scaled below any cosine gap).
    Items without text (zero vectors) score 0. New items need only a text vector
    (`add_items`): they are recommendable at once.

    Example:
        >>> model = TextKNNRecommender().set_text_vectors(vectors).fit(train)  # doctest: +SKIP
    """

    name: ClassVar[str] = "textknn"
    config_class = TextKNNConfig
    config: TextKNNConfig

    def __init__(self, config: TextKNNConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.text_vectors: FloatArray | None = None
        self.vectors_: FloatArray | None = None
        self.counts_: FloatArray | None = None

    def set_text_vectors(self, vectors: np.ndarray) -> TextKNNRecommender:
        """Item text vectors ``(I, T)`` in the training data's item order; returns ``self``."""
        self.text_vectors = np.asarray(vectors, dtype=np.float32)
        return self

    def _fit(self, data: Interactions) -> None:
        if self.text_vectors is None:
            raise DataError(
                "TextKNNRecommender needs item text vectors: call set_text_vectors(vectors) "
                "with one row per training item before fit"
            )
        vectors = check_text_vectors(self.text_vectors, data.n_items, type(self).__name__)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors_ = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.counts_ = data.item_counts().astype(np.float32)

    def history_vectors(self, query: Query) -> FloatArray:
        """``(B, T)`` unit-norm recency-weighted means of the rows' last history vectors."""
        assert self.vectors_ is not None
        n = len(self.vectors_)
        out = np.zeros((len(query), self.vectors_.shape[1]), dtype=np.float32)
        for row, hist in enumerate(query.histories):
            hist = hist[(hist >= 0) & (hist < n)][-self.config.max_history :]
            if len(hist) == 0:
                continue
            weights = self.config.decay ** np.arange(len(hist) - 1, -1, -1, dtype=np.float32)
            mean = weights @ self.vectors_[hist]
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                out[row] = mean / norm
        return out

    def _score(self, query: Query) -> FloatArray:
        assert self.vectors_ is not None and self.counts_ is not None
        scores = self.history_vectors(query) @ self.vectors_.T  # (B, I)
        empty = np.array([len(h) == 0 for h in query.histories], dtype=bool)
        if empty.any():
            # popularity for rows without a usable history, scaled into [0, 1e-3]
            pop = np.log1p(self.counts_)
            scores[empty] = 1e-3 * pop / max(float(pop.max()), 1.0)
        return scores.astype(np.float32)

    @property
    def text_dim(self) -> int | None:
        """Size of the text vectors the fitted model reads (None before fit)."""
        return None if self.vectors_ is None else int(self.vectors_.shape[1])

    def add_items(self, item_ids: Sequence[Any], vectors: np.ndarray) -> IntArray:
        """Add (or re-describe) items by their text vectors; returns their indices.

        Items already known get their vector replaced; new ones are appended to the
        vocabulary and can be recommended (and read in histories) at once.
        """
        self._check_fitted()
        assert self.items_ is not None and self.vectors_ is not None and self.counts_ is not None
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(item_ids), -1)
        if vecs.shape[1] != self.vectors_.shape[1]:
            raise DataError(
                f"add_items: text vectors have {vecs.shape[1]} dimensions, the model uses "
                f"{self.vectors_.shape[1]}"
            )
        try:
            self.items_ = self.items_.extend(list(item_ids))
        except Exception as exc:  # polars cannot cast the ids to the vocabulary's type
            raise DataError(
                f"add_items: item ids {list(item_ids)[:3]} do not fit this model's "
                f"{self.items_.dtype} item ids ({exc})"
            ) from exc
        idx = self.items_.index(list(item_ids))
        grow = len(self.items_) - len(self.vectors_)
        if grow:
            self.vectors_ = np.concatenate(
                [self.vectors_, np.zeros((grow, vecs.shape[1]), np.float32)]
            )
            self.counts_ = np.concatenate([self.counts_, np.zeros(grow, np.float32)])
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        self.vectors_[idx] = vecs / np.where(norms > 0, norms, 1.0)
        return idx

    def _state(self) -> dict[str, np.ndarray]:
        assert self.vectors_ is not None and self.counts_ is not None
        return {TEXT: self.vectors_, COUNTS: self.counts_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        missing = {TEXT, COUNTS} - set(state)
        if missing:
            raise ArtifactError(f"TextKNNRecommender: the weights file lacks {sorted(missing)}")
        vectors = np.asarray(state[TEXT], dtype=np.float32)
        if vectors.shape[0] != self.n_items:
            raise ArtifactError(
                f"TextKNNRecommender: {TEXT!r} has {vectors.shape[0]} rows, the vocabulary "
                f"{self.n_items} items"
            )
        self.vectors_ = vectors
        self.counts_ = np.asarray(state[COUNTS], dtype=np.float32)
