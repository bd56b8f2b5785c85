"""Synthetic catalogue with text: items in topical groups, users who stay within one group."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recpilot.data.interactions import Interactions

GROUPS = (
    "space rocket astronaut",
    "cooking kitchen recipe",
    "jungle animal safari",
    "castle knight sword",
)
ITEMS_PER_GROUP = 12
COLD_PER_GROUP = 3  # the last items of each group never appear in training


def group_of(item: int) -> int:
    return item // ITEMS_PER_GROUP


def cold_items() -> np.ndarray:
    return np.array(
        [
            g * ITEMS_PER_GROUP + j
            for g in range(len(GROUPS))
            for j in range(ITEMS_PER_GROUP - COLD_PER_GROUP, ITEMS_PER_GROUP)
        ]
    )


def item_table() -> pl.DataFrame:
    ids = np.arange(len(GROUPS) * ITEMS_PER_GROUP)
    return pl.DataFrame(
        {
            "item_id": ids,
            "title": [f"{GROUPS[group_of(i)].split()[i % 3]} story number{i}" for i in ids],
            "genres": [[GROUPS[group_of(i)].split()[0]] for i in ids],
            "tags": [GROUPS[group_of(i)].split()[1:] for i in ids],
        }
    )


def group_data(n_users: int = 160, seed: int = 0) -> Interactions:
    """Each user picks one group and views 5–12 of its warm items in random order."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    warm = ITEMS_PER_GROUP - COLD_PER_GROUP
    for u in range(n_users):
        g = u % len(GROUPS)
        for t, j in enumerate(rng.permutation(warm)[: int(rng.integers(5, 10))]):
            users.append(u)
            items.append(g * ITEMS_PER_GROUP + int(j))
            times.append(t)
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "item_id": np.asarray(items, dtype=np.int64),
            "timestamp": np.asarray(times, dtype=np.int64),
            "event_type": ["view"] * len(users),
        }
    )
    from recpilot.data.vocab import Vocabulary

    vocab = Vocabulary(np.arange(len(GROUPS) * ITEMS_PER_GROUP, dtype=np.int64))
    return Interactions.from_frame(frame, items=vocab, item_table=item_table())


@pytest.fixture(scope="session")
def groups() -> Interactions:
    return group_data()
