"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), closed form.

``G = XᵀX + λI``, ``P = G⁻¹``, ``B_ij = −P_ij / P_jj``, ``diag(B) = 0``; scores are
``history @ B``. ``B`` is a dense ``I × I`` matrix, so memory grows with the square of the
catalogue: `EASEConfig.max_items` refuses catalogues that would not fit.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import scipy.sparse as sp
import torch

from recpilot.config import EASEConfig
from recpilot.data.interactions import Interactions
from recpilot.errors import DataError
from recpilot.models.base import Query, Recommender
from recpilot.models.popularity import check_state, popularity_prior
from recpilot.types import FloatArray

if TYPE_CHECKING:
    from recpilot.data.split import EvalSet

logger = logging.getLogger(__name__)


def ease_weights(X: sp.spmatrix | sp.sparray, l2: float) -> FloatArray:
    """Closed-form EASE item-item weights.

    Computed in float64: the Gram matrix, its Cholesky factor and inverse (``torch.linalg``,
    multi-threaded), then the column scaling in place. Peak memory is about two ``I × I``
    float64 matrices plus the float32 result.

    Args:
        X: ``(U, I)`` user × item matrix.
        l2: the L2 regularisation λ (> 0).

    Returns:
        ``(I, I)`` float32 ``B`` with a zero diagonal.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    X64 = sp.csr_matrix(X, dtype=np.float64)
    gram = torch.from_numpy((X64.T @ X64).toarray())  # (I, I) float64
    gram.diagonal().add_(l2)
    chol = torch.linalg.cholesky(gram)  # G = L Lᵀ; G is SPD because λ > 0
    del gram
    P = torch.cholesky_inverse(chol)  # (I, I) = G⁻¹
    del chol
    diag = P.diagonal().clone()  # (I,)
    P.div_(-diag)  # column j divided by −P_jj
    P.diagonal().zero_()
    return P.to(torch.float32).numpy()


def _physical_memory() -> int | None:
    """Total RAM in bytes, where the platform says (POSIX)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


class EASERecommender(Recommender):
    """EASE with a dense item-item weight matrix.

    Scores are ``history_matrix @ B`` plus `popularity_prior` (an empty history ranks by
    popularity). Refuses catalogues larger than ``config.max_items``.
    """

    name: ClassVar[str] = "ease"
    config_class = EASEConfig
    config: EASEConfig

    def __init__(self, config: EASEConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.weights_: FloatArray | None = None
        self.prior_: FloatArray | None = None

    def fit(self, data: Interactions, validation: EvalSet | None = None) -> Self:
        """Learn ``B`` from ``data`` (``validation`` is ignored); returns ``self``.

        Raises:
            DataError: the catalogue has more than ``config.max_items`` items (checked before
                anything is allocated, and before the model changes).
        """
        self._check_size(data.n_items)
        return super().fit(data, validation)

    def _check_size(self, n: int) -> None:
        if n > self.config.max_items:
            fit_gib = 2 * n * n * 8 / 2**30
            keep_gib = n * n * 4 / 2**30
            raise DataError(
                f"EASE needs dense {n} × {n} matrices (about {fit_gib:.1f} GiB while fitting, "
                f"{keep_gib:.1f} GiB to keep) and this catalogue has {n} items, more than "
                f"max_items={self.config.max_items}; raise model.max_items if the machine has "
                "the memory, prune rare items (preprocess.k_core), or use itemknn or als"
            )

    def _fit(self, data: Interactions) -> None:
        n = data.n_items
        need = 2 * n * n * 8 + n * n * 4
        ram = _physical_memory()
        if ram is not None and need > 0.8 * ram:
            logger.warning(
                "ease: %d items need about %.1f GiB while fitting and this machine has %.1f GiB",
                n,
                need / 2**30,
                ram / 2**30,
            )
        start = time.perf_counter()
        self.weights_ = ease_weights(data.to_csr(weighted=self.config.weighted), self.config.l2)
        self.prior_ = popularity_prior(data)
        logger.info("ease: %d items, λ=%g, %.2fs", n, self.config.l2, time.perf_counter() - start)

    def _score(self, query: Query) -> FloatArray:
        assert self.weights_ is not None and self.prior_ is not None
        H = query.history_matrix(self.n_items)  # (B, I) binary
        scores = np.asarray(H @ self.weights_, dtype=np.float32)  # (B, I)
        scores += self.prior_
        return scores

    def _state(self) -> dict[str, np.ndarray]:
        assert self.weights_ is not None and self.prior_ is not None
        return {"B": self.weights_, "prior": self.prior_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n = self.n_items
        check_state(self, state, {"B": (n, n), "prior": (n,)})
        self.weights_ = np.asarray(state["B"], dtype=np.float32)
        self.prior_ = np.asarray(state["prior"], dtype=np.float32)
