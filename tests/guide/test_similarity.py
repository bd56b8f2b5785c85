"""Similarity providers: model embeddings, item-item matrices, co-occurrence, categories."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from recpilot.data.interactions import Interactions
from recpilot.guide.similarity import (
    CategorySimilarity,
    EmbeddingSimilarity,
    ItemMatrixSimilarity,
    cooccurrence_vectors,
    similarity_from_model,
)
from recpilot.models.ease import EASERecommender
from recpilot.models.itemknn import ItemKNNRecommender


def _blocks() -> Interactions:
    """Two blocks of four items: users of a block interact with its items only."""
    rows = [
        (f"u{b}{u}", f"i{b}{j}", 10 * j)
        for b in range(2)
        for u in range(6)
        for j in range(4)
        if (u + j) % 4
    ]
    return Interactions.from_frame(
        pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    )


@pytest.mark.parametrize("model_class", [EASERecommender, ItemKNNRecommender])
def test_item_item_models_make_items_of_a_block_similar(model_class: type) -> None:
    data = _blocks()
    model = model_class().fit(data)
    sim = similarity_from_model(model)
    assert isinstance(sim, ItemMatrixSimilarity)
    idx = data.items.index(np.asarray(["i00", "i01", "i10"]), missing="unknown")
    s = sim.similarity(idx, idx)
    assert s[0, 0] == pytest.approx(1.0)
    assert s[0, 1] > s[0, 2]


def test_sequence_models_give_their_item_table() -> None:
    table = torch.randn(5, 3)

    class Module:
        def item_weight(self) -> torch.Tensor:
            return table

    class FakeSASRec:
        module_ = Module()

    sim = similarity_from_model(FakeSASRec())
    assert isinstance(sim, EmbeddingSimilarity) and sim.n_items == 5
    v = table.numpy() / np.linalg.norm(table.numpy(), axis=1, keepdims=True)
    assert sim.similarity(np.asarray([0, 1]), np.asarray([2])) == pytest.approx(
        v[[0, 1]] @ v[[2]].T, abs=1e-5
    )


def test_models_without_vectors_need_interactions() -> None:
    class Bare:
        pass

    with pytest.raises(ValueError, match="pass the training interactions"):
        similarity_from_model(Bare())
    sim = similarity_from_model(Bare(), _blocks())
    assert isinstance(sim, EmbeddingSimilarity)


def test_cooccurrence_vectors_are_seeded_and_separate_blocks() -> None:
    X = sp.block_diag([np.ones((5, 4)), np.ones((5, 4))]).tocsr()
    a, b = cooccurrence_vectors(X, dim=2, seed=0), cooccurrence_vectors(X, dim=2, seed=0)
    assert np.array_equal(a, b)
    s = EmbeddingSimilarity(a).similarity(np.arange(8), np.arange(8))
    assert s[0, 1] == pytest.approx(1.0, abs=1e-5) and abs(s[0, 5]) < 1e-5


def test_category_similarity() -> None:
    sim = CategorySimilarity([0, 0, 1, -1])
    assert sim.similarity(np.arange(4), np.arange(4)).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ]
    with pytest.raises(ValueError, match="must be square"):
        ItemMatrixSimilarity(np.ones((2, 3)))
