"""Candidate retrieval for large catalogues: a model's scores as inner products + an ANN index.

`vector_view` expresses a fitted model's scores as ``q · v_i``: the sequence models (SASRec,
BERT4Rec, HSTU; the tied head, query = the hidden state after the history) and ALS (factors,
the popularity prior folded in as one more dimension). `Retriever` then serves top-k lists
from a faiss HNSW index (`recpilot.serving.ann`): it fetches ``candidates`` items per query,
drops blocked ones (seen, unavailable, outside a category), and scores exactly; when the
filters leave fewer than ``k`` of them it falls back to exact scoring of the allowed items, so
a filter never empties a list that has answers.

EASE and item-kNN scores are not inner products of a fixed-size query: no view, no index.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recpilot.models.base import Query, Recommender
from recpilot.serving.ann import (
    CandidateIndex,
    IndexParams,
    load_or_build,
    single_threaded_search,
)
from recpilot.types import FloatArray, IntArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorView:
    """A model's scores as ``query(q) @ item_vectors.T``.

    Attributes:
        item_vectors: ``(I, D)`` float32.
        query: a `Query` of non-empty histories → ``(B, D)`` float32 query vectors.
        empty_scores: ``(I,)`` scores of an empty history (the model's prior).
    """

    item_vectors: FloatArray
    query: Callable[[Query], FloatArray]
    empty_scores: FloatArray


def vector_view(model: Recommender) -> VectorView | None:
    """The inner-product form of a fitted model's scores, or None when it has none."""
    from recpilot.models.als import ALSRecommender
    from recpilot.models.sequential import SASRecRecommender

    if isinstance(model, SASRecRecommender) and model.module_ is not None:
        module = model.module_
        assert model.prior_ is not None
        with torch.no_grad():
            item_weight = getattr(module, "item_weight")  # noqa: B009 - every sequence module
            weight = item_weight().detach().float().cpu().numpy()

        def sequence_query(query: Query) -> FloatArray:
            was_training = module.training
            if was_training:  # (train()/eval() walk every submodule: only when needed)
                module.eval()
            try:
                with torch.inference_mode():
                    hidden = model._hidden(
                        module,
                        list(query.histories),
                        None if query.timestamps is None else list(query.timestamps),
                    )
            finally:
                if was_training:
                    module.train()
            return hidden.float().cpu().numpy()

        return VectorView(np.ascontiguousarray(weight), sequence_query, model.prior_.copy())
    if isinstance(model, ALSRecommender) and model.item_factors_ is not None:
        assert model.prior_ is not None
        prior = model.prior_.astype(np.float32)
        vectors = np.hstack([model.item_factors_, prior[:, None]]).astype(np.float32)

        def als_query(query: Query) -> FloatArray:
            x = model.fold_in(query).astype(np.float32)
            return np.hstack([x, np.ones((len(x), 1), dtype=np.float32)])

        return VectorView(vectors, als_query, prior.copy())
    return None


@dataclass(frozen=True)
class Candidates:
    """What the index found for one history: its query vector and the candidates with their
    exact scores, best first (a service may keep them while the history is unchanged)."""

    query: FloatArray  # (D,)
    ids: IntArray  # (n,)
    scores: FloatArray  # (n,)

    @property
    def nbytes(self) -> int:
        return int(self.query.nbytes + self.ids.nbytes + self.scores.nbytes)


class Retriever:
    """Top-k lists of one model from an ANN index (see the module docstring).

    Args:
        view: the model's vectors.
        index: an index built from ``view.item_vectors``.
        candidates: items fetched from the index per query before filtering.
    """

    def __init__(self, view: VectorView, index: CandidateIndex, candidates: int = 500) -> None:
        self.view = view
        self.index = index
        self.candidates = candidates
        self._lock = threading.Lock()
        # query vectors of one-item histories (the reasons' rows): a function of the item only
        self._single: OrderedDict[int, FloatArray] = OrderedDict()
        self.max_single = 100_000
        single_threaded_search()  # serving: see single_threaded_search

    @classmethod
    def for_model(
        cls,
        model: Recommender,
        cache_dir: Path | None = None,
        candidates: int = 500,
        params: IndexParams | None = None,
        ef_search: int | None = None,
    ) -> Retriever | None:
        """A retriever for ``model`` (None when its scores are not inner products).

        With ``cache_dir``, the index is read from there when it matches the model's vectors,
        else built and saved there.
        """
        view = vector_view(model)
        if view is None:
            return None
        if cache_dir is not None:
            index = load_or_build(cache_dir, view.item_vectors, params)
        else:
            index = CandidateIndex.build(view.item_vectors, params)
        if ef_search is not None:
            index.params = dataclasses.replace(index.params, ef_search=ef_search)
        return cls(view, index, candidates)

    def sync(self, view: VectorView) -> None:
        """Take a newer view of the same model whose catalogue grew (items added online)."""
        with self._lock:
            n_old = self.index.n_items
            if len(view.item_vectors) > n_old:
                self.index.add(view.item_vectors[n_old:])
            self.view = view
            self._single.clear()

    def recommend(
        self,
        history: IntArray,
        k: int,
        blocked: np.ndarray | None,
        found: Candidates | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` items for one non-empty history.

        Args:
            history: item indices in time order.
            k: list length.
            blocked: ``(I,)`` bool, True for items that must not be returned; None: none.
            found: this history's `candidates` from an earlier call (a cache), or None.

        Returns:
            ``(ids (n,), scores (n,))``, best first, ``n <= k``.
        """
        if found is None or len(found.ids) < min(len(self.view.item_vectors), 4 * k):
            found = self.candidates_of(history, k)
        return self.select(found, k, blocked)

    def candidates_of(self, history: IntArray, k: int = 10) -> Candidates:
        """The index's candidates for one non-empty history, exactly scored, best first."""
        view = self.view
        q = view.query(Query.from_histories([np.asarray(history, dtype=np.int64)]))  # (1, D)
        fetch = min(len(view.item_vectors), max(self.candidates, 4 * k))
        ids, _ = self.index.search(q, fetch)
        ids = ids[0][ids[0] >= 0].astype(np.int64)
        scores = (view.item_vectors[ids] @ q[0]).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        return Candidates(q[0].astype(np.float32), ids[order], scores[order])

    def select(
        self, found: Candidates, k: int, blocked: np.ndarray | None
    ) -> tuple[IntArray, FloatArray]:
        """The best ``k`` of ``found`` that are not blocked; when the filters leave fewer than
        ``k``, every allowed item is scored exactly."""
        keep = slice(None) if blocked is None else ~blocked[found.ids]
        ids, scores = found.ids[keep], found.scores[keep]
        if len(ids) < k and (blocked is None or not blocked.all()):
            # the filters took most candidates: score every allowed item exactly
            n_items = len(self.view.item_vectors)
            ids = np.arange(n_items) if blocked is None else np.flatnonzero(~blocked)
            scores = (self.view.item_vectors[ids] @ found.query).astype(np.float32)
            order = np.argsort(-scores, kind="stable")
            ids, scores = ids[order], scores[order]
        return ids[:k].astype(np.int64), scores[:k].astype(np.float32)

    def score_items(self, query: Query, items: IntArray) -> FloatArray:
        """``(B, n)`` exact scores of some items for every query row (empty rows: the prior)."""
        view = self.view
        items = np.asarray(items, dtype=np.int64)
        out = np.empty((len(query), len(items)), dtype=np.float32)
        lengths = np.asarray([len(h) for h in query.histories])
        out[lengths == 0] = view.empty_scores[items]
        rows = np.flatnonzero(lengths > 0)
        if len(rows) and (lengths[rows] == 1).all():  # one-item rows (reasons): cached vectors
            out[rows] = self._single_queries([int(query.histories[r][0]) for r in rows]) @ (
                view.item_vectors[items].T
            )
        elif len(rows):
            sub = Query.from_histories([query.histories[r] for r in rows])
            out[rows] = view.query(sub) @ view.item_vectors[items].T
        return out

    def _single_queries(self, items: list[int]) -> FloatArray:
        """``(m, D)`` query vectors of the one-item histories ``[i]``, cached."""
        with self._lock:
            view = self.view
            found = {i: self._single[i] for i in items if i in self._single}
        missing = [i for i in items if i not in found]
        if missing:
            fresh = view.query(Query.from_histories([[i] for i in missing]))
            with self._lock:
                if self.view is view:  # not synced meanwhile
                    for i, q in zip(missing, fresh, strict=True):
                        self._single[i] = q
                    while len(self._single) > self.max_single:
                        self._single.popitem(last=False)
            found.update(zip(missing, fresh, strict=True))
        return np.stack([found[i] for i in items])
