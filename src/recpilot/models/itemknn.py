"""Item-based nearest neighbours with (shrunk) cosine similarity.

``sim(i, j) = x_i · x_j / (‖x_i‖ ‖x_j‖ + shrink)`` where ``x_i`` is item ``i``'s column of
the binary (or weighted) user × item matrix. Each item keeps its ``neighbours`` most similar
items; a user's score for item ``j`` is the sum of ``sim(i, j)`` over the items ``i`` in the
history for which ``j`` is one of ``i``'s neighbours (Sarwar et al. 2001, Deshpande & Karypis
2004; the convention of benfred/implicit's ``ItemItemRecommender``).
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recpilot.config import ItemKNNConfig
from recpilot.data.interactions import Interactions
from recpilot.models.base import Query, Recommender
from recpilot.models.popularity import check_state, popularity_prior
from recpilot.types import FloatArray

logger = logging.getLogger(__name__)

#: Dense float64 cells per similarity block (``block × I``): 2**24 cells = 128 MiB.
BLOCK_CELLS = 1 << 24


def cosine_neighbours(
    X: sp.spmatrix | sp.sparray,
    neighbours: int,
    shrink: float = 0.0,
    block_size: int | None = None,
) -> sp.csr_matrix:
    """Top-``neighbours`` cosine similarities of every item, computed in item blocks.

    Memory stays at ``block_size × I`` dense cells plus the result, so large catalogues fit:
    for each block of items the dense ``(block, I)`` similarity block is formed, its diagonal
    zeroed, and each row cut to its ``neighbours`` largest positive entries (``argpartition``).

    Args:
        X: ``(U, I)`` user × item matrix, non-negative.
        neighbours: similar items kept per item. With ``neighbours >= I - 1`` nothing is cut
            and the result is the full (symmetric) similarity matrix with a zero diagonal.
        shrink: added to the norm product (Bell & Koren shrinkage); 0 gives plain cosine.
        block_size: items per block; by default as many as fit `BLOCK_CELLS`.

    Returns:
        ``(I, I)`` float32 CSR; row ``i`` holds item ``i``'s neighbours and similarities,
        column indices sorted.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    n_items = X.shape[1]
    if block_size is None:
        block_size = max(1, BLOCK_CELLS // max(n_items, 1))
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    Xt = X.T.tocsr()  # (I, U)
    norms = np.sqrt(np.asarray(Xt.multiply(Xt).sum(axis=1)).ravel())  # (I,)
    norms[norms == 0] = 1.0  # items without events: their dot products are 0 anyway
    keep = min(neighbours, max(n_items - 1, 1))

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for start in range(0, n_items, block_size):
        stop = min(start + block_size, n_items)
        block = (Xt[start:stop] @ X).toarray()  # (b, I) dot products
        block /= norms[start:stop, None] * norms[None, :] + shrink
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if keep < n_items:
            top = np.argpartition(-block, keep - 1, axis=1)[:, :keep]  # (b, keep)
        else:
            top = np.broadcast_to(np.arange(n_items), (stop - start, n_items))
        top_vals = np.take_along_axis(block, top, axis=1)
        r, c = np.nonzero(top_vals > 0)
        rows.append(r + start)
        cols.append(top[r, c])
        vals.append(top_vals[r, c])
    sim = sp.csr_matrix(
        (
            np.concatenate(vals).astype(np.float32) if vals else np.empty(0, np.float32),
            (
                np.concatenate(rows) if rows else np.empty(0, np.int64),
                np.concatenate(cols) if cols else np.empty(0, np.int64),
            ),
        ),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    sim.sort_indices()
    return sim


class ItemKNNRecommender(Recommender):
    """Item-item cosine kNN on the binary (or weighted) interaction matrix.

    Scores are ``history_matrix @ similarity`` plus `popularity_prior`, so an empty history
    (or items no history item points to) falls back to the popularity order.
    """

    name: ClassVar[str] = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.similarity_: sp.csr_matrix | None = None
        self.prior_: FloatArray | None = None

    def _fit(self, data: Interactions) -> None:
        start = time.perf_counter()
        X = data.to_csr(weighted=self.config.weighted)
        self.similarity_ = cosine_neighbours(X, self.config.neighbours, self.config.shrink)
        self.prior_ = popularity_prior(data)
        logger.info(
            "itemknn: %d items, %d similarities kept, %.2fs",
            data.n_items,
            self.similarity_.nnz,
            time.perf_counter() - start,
        )

    def _score(self, query: Query) -> FloatArray:
        assert self.similarity_ is not None and self.prior_ is not None
        H = query.history_matrix(self.n_items)  # (B, I) binary
        scores = np.asarray((H @ self.similarity_).toarray(), dtype=np.float32)  # (B, I)
        scores += self.prior_
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        assert self.similarity_ is not None and self.prior_ is not None
        sim = self.similarity_
        return {
            "sim_indptr": sim.indptr.astype(np.int64),
            "sim_indices": sim.indices.astype(np.int64),
            "sim_data": sim.data.astype(np.float32),
            "prior": self.prior_,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items
        check_state(
            self,
            state,
            {
                "sim_indptr": (n + 1,),
                "sim_indices": (None,),
                "sim_data": (None,),
                "prior": (n,),
            },
        )
        self.similarity_ = sp.csr_matrix(
            (state["sim_data"], state["sim_indices"], state["sim_indptr"]),
            shape=(n, n),
            dtype=np.float32,
        )
        self.prior_ = np.asarray(state["prior"], dtype=np.float32)
