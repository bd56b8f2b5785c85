"""Implicit-feedback matrix factorisation by alternating least squares.

Hu, Koren & Volinsky (ICDM 2008): preference ``p_ui = 1`` for observed pairs (0 otherwise),
confidence ``c_ui = 1 + alpha · w_ui``, minimise
``Σ c_ui (p_ui − x_uᵀ y_i)² + λ (Σ ‖x_u‖² + Σ ‖y_i‖²)``.

Training runs ``implicit``'s conjugate-gradient ALS (``implicit.cpu.als``); it is
deterministic for a given seed (initial factors from the seed, every user and item solved
independently, whatever the thread count). Serving does not look the user up: every query row
gets its user vector from its history by the exact ALS user step against the learned item
factors ``Y``::

    x = (YᵀY + Yₕᵀ (Cₕ − I) Yₕ + λI)⁻¹ Yₕᵀ cₕ

so users never seen in training and histories newer than the model are served the same way
as training users. Histories carry no weights, so they are scored with ``w = 1``
(``cₕ = 1 + alpha``), also when the model was trained with ``weighted=True``. Only a row
with an empty history falls back: to the learned factor of a training user, else to zero
(the popularity prior then ranks).
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from recpilot.config import ALSConfig
from recpilot.data.interactions import Interactions
from recpilot.models.base import Query, Recommender
from recpilot.models.popularity import check_state, popularity_prior
from recpilot.types import FloatArray

logger = logging.getLogger(__name__)

#: Gathered history factors per solve chunk (rows × longest history × factors): 2**22 float64
#: cells = 32 MiB.
CHUNK_CELLS = 1 << 22


def als_user_factors(
    item_factors: np.ndarray,
    histories: sp.spmatrix | sp.sparray,
    regularization: float,
    alpha: float,
    gram: torch.Tensor | None = None,
) -> FloatArray:
    """Exact ALS user step for a batch of histories (batched Cholesky solves, float64).

    Args:
        item_factors: ``(I, F)`` learned item factors ``Y``.
        histories: ``(B, I)`` CSR of interaction weights ``w`` (1 for a plain history).
        regularization: λ.
        alpha: confidence scale, ``c = 1 + alpha · w``.
        gram: ``(F, F)`` float64 ``YᵀY`` if already computed.

    Returns:
        ``(B, F)`` float32 user factors; an empty history gives the zero vector.
    """
    Y = torch.from_numpy(np.ascontiguousarray(item_factors)).to(torch.float64)  # (I, F)
    H = sp.csr_matrix(histories)
    H.sum_duplicates()
    n_rows, n_factors = H.shape[0], Y.shape[1]
    if gram is None:
        gram = Y.T @ Y
    base = gram + regularization * torch.eye(n_factors, dtype=torch.float64)  # (F, F)
    out = torch.zeros(n_rows, n_factors, dtype=torch.float64)
    # rows sorted by history length, so each chunk pads to a similar length
    order = np.argsort(np.diff(H.indptr), kind="stable")
    H = H[order]
    lengths = np.diff(H.indptr)
    start = int(np.searchsorted(lengths, 1))  # empty histories keep the zero vector
    while start < n_rows:
        # rows up to twice as long as the first (padding at most doubles the work), as many
        # as fit CHUNK_CELLS once padded
        bucket_end = int(np.searchsorted(lengths, 2 * lengths[start], side="right"))
        cells = np.arange(1, bucket_end - start + 1) * lengths[start:bucket_end] * n_factors
        stop = start + max(1, int(np.searchsorted(cells, CHUNK_CELLS, side="right")))
        chunk = _solve_chunk(Y, H[start:stop], base, alpha, int(lengths[stop - 1]))
        out[torch.from_numpy(order[start:stop])] = chunk
        start = stop
    return out.to(torch.float32).numpy()


def _solve_chunk(
    Y: torch.Tensor, H: sp.csr_matrix, base: torch.Tensor, alpha: float, longest: int
) -> torch.Tensor:
    """User step for the rows of ``H`` (``b`` rows, at most ``longest`` items each)."""
    n_rows = H.shape[0]
    lengths = np.diff(H.indptr)
    row_t = torch.from_numpy(np.repeat(np.arange(n_rows), lengths))
    pos_t = torch.from_numpy(np.arange(H.nnz) - np.repeat(H.indptr[:-1], lengths))
    idx = torch.zeros(n_rows, longest, dtype=torch.int64)  # (b, L), padding points at item 0
    w = torch.zeros(n_rows, longest, dtype=torch.float64)  # (b, L), padding weight 0
    real = torch.zeros(n_rows, longest, dtype=torch.float64)  # (b, L), 1 on real items
    idx[row_t, pos_t] = torch.from_numpy(H.indices.astype(np.int64))
    w[row_t, pos_t] = torch.from_numpy(H.data.astype(np.float64))
    real[row_t, pos_t] = 1.0
    Yh = Y[idx]  # (b, L, F)
    # Yₕᵀ (Cₕ − I) Yₕ with c − 1 = alpha·w (0 on padding); Yₕᵀ cₕ with c = 1 + alpha·w
    A = base + torch.bmm((Yh * (alpha * w)[..., None]).mT, Yh)  # (b, F, F)
    conf = real + alpha * w  # (b, L)
    rhs = torch.bmm(Yh.mT, conf[..., None])  # (b, F, 1)
    chol, info = torch.linalg.cholesky_ex(A)
    x = torch.cholesky_solve(rhs, chol)[..., 0]  # (b, F)
    bad = info != 0
    if bool(bad.any()):  # λ = 0 with a rank-deficient system: least-norm solution instead
        x[bad] = (torch.linalg.pinv(A[bad]) @ rhs[bad])[..., 0]
    return x


class ALSRecommender(Recommender):
    """Implicit ALS fitted with ``implicit``; users are folded in from their histories.

    Scores are ``X Yᵀ`` plus `popularity_prior`, with ``X`` from `als_user_factors`. A row with
    an empty history gets the learned factor of its user when the user is a training user,
    else the zero vector (so the popularity prior ranks).
    """

    name: ClassVar[str] = "als"
    config_class = ALSConfig
    config: ALSConfig

    def __init__(self, config: ALSConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.user_factors_: FloatArray | None = None
        self.item_factors_: FloatArray | None = None
        self.prior_: FloatArray | None = None
        self._gram: torch.Tensor | None = None

    def _fit(self, data: Interactions) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        start = time.perf_counter()
        confidence = data.to_csr(weighted=cfg.weighted)  # (U, I)
        # implicit uses the matrix values as confidences c (its own alpha would give c = alpha·w);
        # passing 1 + alpha·w with alpha=1 gives the paper's c = 1 + alpha·w.
        confidence.data = (1.0 + cfg.alpha * confidence.data).astype(np.float32)
        # implicit asks for a single-threaded BLAS pool (it parallelises over users itself)
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=1.0,
                dtype=np.float32,
                iterations=cfg.iterations,
                random_state=cfg.seed,
            )
            als.fit(confidence, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(als.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(als.item_factors, dtype=np.float32)
        self.prior_ = popularity_prior(data)
        self._gram = None
        logger.info(
            "als: %d users, %d items, %d factors, %d iterations, %.2fs",
            data.n_users,
            data.n_items,
            cfg.factors,
            cfg.iterations,
            time.perf_counter() - start,
        )

    def fold_in(self, query: Query) -> FloatArray:
        """User vectors of the query rows, ``(B, F)`` float32 (see the class docstring)."""
        self._check_fitted()
        assert self.item_factors_ is not None and self.user_factors_ is not None
        if self._gram is None:
            Y = torch.from_numpy(self.item_factors_).to(torch.float64)
            self._gram = Y.T @ Y  # (F, F)
        H = query.history_matrix(self.n_items)  # (B, I) binary
        X = als_user_factors(
            self.item_factors_, H, self.config.regularization, self.config.alpha, self._gram
        )
        empty = np.diff(H.indptr) == 0
        known = (query.users >= 0) & (query.users < len(self.user_factors_))
        fallback = np.flatnonzero(empty & known)
        X[fallback] = self.user_factors_[query.users[fallback]]
        return X

    def _score(self, query: Query) -> FloatArray:
        assert self.item_factors_ is not None and self.prior_ is not None
        scores = self.fold_in(query) @ self.item_factors_.T  # (B, I)
        scores += self.prior_
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        assert self.user_factors_ is not None and self.item_factors_ is not None
        assert self.prior_ is not None
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "prior": self.prior_,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n_users = len(self.users_) if self.users_ is not None else None
        f = self.config.factors
        check_state(
            self,
            state,
            {
                "user_factors": (n_users, f),
                "item_factors": (self.n_items, f),
                "prior": (self.n_items,),
            },
        )
        self.user_factors_ = np.asarray(state["user_factors"], dtype=np.float32)
        self.item_factors_ = np.asarray(state["item_factors"], dtype=np.float32)
        self.prior_ = np.asarray(state["prior"], dtype=np.float32)
        self._gram = None
