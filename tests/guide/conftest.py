"""Fixtures for the guide tests: a small random catalogue with categories and embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from recpilot.guide.similarity import EmbeddingSimilarity
from recpilot.guide.stages import ItemSpace

N_ITEMS = 120


@pytest.fixture(scope="session")
def space() -> ItemSpace:
    rng = np.random.default_rng(7)
    return ItemSpace(
        N_ITEMS,
        item_ids=[f"i{j}" for j in range(N_ITEMS)],
        categories=rng.integers(0, 4, N_ITEMS),
        category_names=("books", "games", "music", "toys"),
        available=rng.random(N_ITEMS) > 0.1,
        popularity=np.floor(1000 / np.arange(1, N_ITEMS + 1)).astype(np.float64),
        created_at=np.linspace(0, 30 * 86_400, N_ITEMS),
        attributes={
            "price": np.where(np.arange(N_ITEMS) % 7 == 0, None, rng.uniform(1, 100, N_ITEMS))
        },
        similarity=EmbeddingSimilarity(rng.standard_normal((N_ITEMS, 8))),
        new_items=np.arange(N_ITEMS - 5, N_ITEMS),
    )


@pytest.fixture(scope="session")
def scores() -> np.ndarray:
    return np.random.default_rng(3).standard_normal(N_ITEMS).astype(np.float32)
