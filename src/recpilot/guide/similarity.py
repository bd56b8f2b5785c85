"""Item similarity providers for diversity (MMR) and intra-list diversity.

A provider answers ``similarity(a, b) -> (len(a), len(b))`` for item indices. Where the model
has item embeddings (the sequence models' item table, ALS factors) they are used; otherwise
item vectors come from the co-occurrence matrix (a truncated SVD of the user × item matrix),
or items are similar when they share a category.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recpilot.types import FloatArray, IntArray


@runtime_checkable
class ItemSimilarity(Protocol):
    """Pairwise item similarity in [-1, 1] (1: the same item)."""

    n_items: int

    def similarity(self, a: IntArray, b: IntArray) -> FloatArray:
        """``(len(a), len(b))`` similarities of item indices ``a`` and ``b``."""
        ...


class EmbeddingSimilarity:
    """Cosine similarity of item vectors.

    Args:
        vectors: ``(I, D)`` one vector per item index (zero rows are similar to nothing).
    """

    def __init__(self, vectors: npt.ArrayLike) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2:
            raise ValueError(f"item vectors must be an (I, D) matrix, got shape {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = np.where(norms > 0, v / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        self.n_items = len(v)

    def similarity(self, a: IntArray, b: IntArray) -> FloatArray:
        return np.asarray(self.vectors[a] @ self.vectors[b].T, dtype=np.float32)


class CategorySimilarity:
    """1 for items that share a category, 0 otherwise (items without one: 0, but 1 to self).

    Args:
        categories: ``(I,)`` category code per item index, -1 for none.
    """

    def __init__(self, categories: npt.ArrayLike) -> None:
        self.categories = np.asarray(categories, dtype=np.int64).reshape(-1)
        self.n_items = len(self.categories)

    def similarity(self, a: IntArray, b: IntArray) -> FloatArray:
        ca, cb = self.categories[a][:, None], self.categories[b][None, :]
        same = (ca == cb) & (ca >= 0)
        same |= np.asarray(a)[:, None] == np.asarray(b)[None, :]
        return same.astype(np.float32)


class ItemMatrixSimilarity:
    """Cosine of the rows of an item × item matrix (EASE weights, item-kNN neighbours).

    Two items are similar when the model relates them to the same other items.

    Args:
        matrix: ``(I, I)`` dense or sparse item-item weights.
    """

    def __init__(self, matrix: Any) -> None:
        self.sparse = sp.issparse(matrix)
        m: Any
        if self.sparse:
            m = sp.csr_matrix(matrix, dtype=np.float32)
            sq = np.asarray(m.multiply(m).sum(axis=1)).ravel()
        else:
            m = np.asarray(matrix)
            sq = np.einsum("ij,ij->i", m, m) if m.ndim == 2 else np.zeros(0)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"an item-item matrix must be square, got shape {m.shape}")
        self.matrix = m
        self.norms = np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)
        self.n_items = m.shape[0]

    def similarity(self, a: IntArray, b: IntArray) -> FloatArray:
        ma, mb = self.matrix[a], self.matrix[b]
        dots = ma @ mb.T
        dots = dots.toarray() if sp.issparse(dots) else np.asarray(dots)
        denom = np.outer(self.norms[a], self.norms[b])
        out = np.divide(dots, denom, out=np.zeros(denom.shape, np.float64), where=denom > 0)
        same = np.asarray(a)[:, None] == np.asarray(b)[None, :]
        return np.where(same, 1.0, out).astype(np.float32)


def cooccurrence_vectors(matrix: Any, dim: int = 64, seed: int = 0) -> FloatArray:
    """Item vectors from a truncated SVD of the ``(U, I)`` interaction matrix.

    Items that the same users interact with get close vectors (the right singular vectors,
    scaled by the singular values). Deterministic for a given ``seed``.

    Args:
        matrix: ``(U, I)`` sparse (or dense) user × item matrix.
        dim: vector size (capped below ``min(U, I)``).
    """
    from scipy.sparse.linalg import svds

    X = sp.csr_matrix(matrix, dtype=np.float64)
    k = max(1, min(dim, min(X.shape) - 1))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(X.shape))
    _, s, vt = svds(X, k=k, v0=v0)
    return np.asarray((vt.T * s[None, :]), dtype=np.float32)  # (I, k)


def similarity_from_model(model: Any, interactions: Any | None = None) -> ItemSimilarity:
    """The best similarity a model offers.

    Sequence models (SASRec, BERT4Rec, HSTU: ``module_.items``) and ALS (``item_factors_``)
    give their item vectors; EASE and item-kNN their item-item matrix (`ItemMatrixSimilarity`);
    otherwise co-occurrence vectors of ``interactions`` are used.

    Raises:
        ValueError: the model has no item vectors and no interactions were given.
    """
    module = getattr(model, "module_", None)
    if module is not None and hasattr(module, "item_weight"):
        weight = module.item_weight().detach().float().cpu().numpy()
        return EmbeddingSimilarity(weight)
    factors = getattr(model, "item_factors_", None)
    if factors is not None:
        return EmbeddingSimilarity(factors)
    for name in ("weights_", "similarity_"):  # EASE, item-kNN
        matrix = getattr(model, name, None)
        if matrix is not None:
            return ItemMatrixSimilarity(matrix)
    if interactions is None:
        raise ValueError(
            f"{type(model).__name__} has no item vectors: pass the training interactions so "
            "that co-occurrence vectors can be computed"
        )
    return EmbeddingSimilarity(cooccurrence_vectors(interactions.to_csr()))


def intra_list_diversity(lists: npt.ArrayLike, sim: ItemSimilarity) -> npt.NDArray[np.float64]:
    """Mean pairwise dissimilarity ``1 - sim`` within each list (-1 padding ignored).

    Args:
        lists: ``(B, K)`` item indices.

    Returns:
        ``(B,)`` float64; 0 for lists with fewer than two items.
    """
    ids = np.asarray(lists, dtype=np.int64)
    out = np.zeros(len(ids), dtype=np.float64)
    for row, items in enumerate(ids):
        items = items[items >= 0]
        n = len(items)
        if n < 2:
            continue
        s = sim.similarity(items, items).astype(np.float64)
        out[row] = float((n * n - s.sum() - (n - np.trace(s))) / (n * (n - 1)))
    return out


__all__ = [
    "CategorySimilarity",
    "EmbeddingSimilarity",
    "ItemMatrixSimilarity",
    "ItemSimilarity",
    "cooccurrence_vectors",
    "intra_list_diversity",
    "similarity_from_model",
]
