"""The behaviour every `Recommender` must have, as a test mixin, plus synthetic data.

A model's test class subclasses `RecommenderContract` and implements `make_model` (in the
spirit of benfred/implicit's ``RecommenderBase`` tests); the data are small synthetic
`Interactions` built here, so no dataset is needed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors import safe_open

from recpilot.data.interactions import Interactions
from recpilot.data.vocab import Vocabulary
from recpilot.errors import NotFittedError
from recpilot.models.base import Query, Recommender

N_BLOCKS = 4
USERS_PER_BLOCK = 12
ITEMS_PER_BLOCK = 8
KEPT_PER_USER = 6  # each user sees 6 of the 8 items of their block


def interactions(
    users: Sequence[int] | np.ndarray,
    items: Sequence[int] | np.ndarray,
    n_items: int | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
) -> Interactions:
    """Events ``(users[n], items[n])`` in log order, as `Interactions`.

    Args:
        users: external user ids (ints).
        items: external item ids (ints).
        n_items: item vocabulary ``0..n_items-1`` (items without events allowed); by default
            the distinct ``items``.
        weights: optional per-event weights.
    """
    users = np.asarray(users, dtype=np.int64)
    frame = pl.DataFrame(
        {
            "user_id": users,
            "item_id": np.asarray(items, dtype=np.int64),
            "timestamp": np.arange(len(users), dtype=np.int64),
            "event_type": ["view"] * len(users),
        }
    )
    if weights is not None:
        frame = frame.with_columns(pl.Series("weight", np.asarray(weights, dtype=np.float32)))
    vocab = None if n_items is None else Vocabulary(np.arange(n_items, dtype=np.int64), "item")
    return Interactions.from_frame(frame, items=vocab)


@cache
def block_data() -> Interactions:
    """Block ("checkerboard") data: users of block ``b`` interact with items of block ``b``.

    ``N_BLOCKS`` blocks of ``USERS_PER_BLOCK`` users and ``ITEMS_PER_BLOCK`` items; each user
    sees a random ``KEPT_PER_USER`` of their block's items, and every fourth user one item of
    the next block (noise). User ``u`` is in block ``u // USERS_PER_BLOCK``, item ``i`` in
    block ``i // ITEMS_PER_BLOCK``; user and item ids equal their indices.
    """
    rng = np.random.default_rng(0)
    users: list[int] = []
    items: list[int] = []
    for block in range(N_BLOCKS):
        block_items = np.arange(ITEMS_PER_BLOCK) + block * ITEMS_PER_BLOCK
        for j in range(USERS_PER_BLOCK):
            user = block * USERS_PER_BLOCK + j
            seen = list(rng.choice(block_items, KEPT_PER_USER, replace=False))
            if j % 4 == 0:
                other = (block + 1) % N_BLOCKS
                seen.append(int(rng.integers(ITEMS_PER_BLOCK)) + other * ITEMS_PER_BLOCK)
            users += [user] * len(seen)
            items += [int(i) for i in seen]
    return interactions(users, items)


def block_items(block: int) -> np.ndarray:
    return np.arange(ITEMS_PER_BLOCK) + block * ITEMS_PER_BLOCK


class RecommenderContract(ABC):
    """Tests every recommender passes. Subclasses implement `make_model`.

    The two block-structure tests at the end assume a personalised model; a model that is not
    (popularity) overrides them with what it should do on the same data instead.
    """

    @abstractmethod
    def make_model(self) -> Recommender:
        """A fresh, unfitted model with a fixed configuration (and seed)."""

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls) -> Recommender:
        """One model fitted on `block_data`, shared by the tests of a class (read-only)."""
        return cls().make_model().fit(block_data())

    @pytest.fixture
    def query(self) -> Query:
        """Three known users (one per block) with their training histories."""
        return Query.for_users(block_data(), [0, USERS_PER_BLOCK + 1, 2 * USERS_PER_BLOCK + 2])

    # -- fitting ---------------------------------------------------------------------------------
    def test_fit_returns_self(self) -> None:
        model = self.make_model()
        assert model.fit(block_data()) is model
        assert model.is_fitted
        assert model.n_items == block_data().n_items

    def test_unfitted_model_raises(self, query: Query, tmp_path: Path) -> None:
        model = self.make_model()
        assert not model.is_fitted
        with pytest.raises(NotFittedError, match="fit"):
            model.score(query)
        with pytest.raises(NotFittedError):
            model.recommend(query, k=3)
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "model")

    def test_refit_is_deterministic(self, fitted: Recommender, query: Query) -> None:
        again = self.make_model().fit(block_data())
        np.testing.assert_array_equal(again.score(query), fitted.score(query))

    def test_items_without_events(self) -> None:
        data = interactions([0, 0, 1, 1, 2], [0, 1, 1, 2, 0], n_items=6)  # items 3..5 unseen
        model = self.make_model().fit(data)
        scores = model.score(Query.from_histories([[0], [3, 4], []]))
        assert scores.shape == (3, 6)
        assert np.isfinite(scores).all()

    # -- scoring ---------------------------------------------------------------------------------
    def test_score_shape_and_dtype(self, fitted: Recommender, query: Query) -> None:
        scores = fitted.score(query)
        assert scores.shape == (len(query), fitted.n_items)
        assert scores.dtype == np.float32
        assert np.isfinite(scores).all()

    def test_empty_batch(self, fitted: Recommender) -> None:
        query = Query.from_histories([])
        assert fitted.score(query).shape == (0, fitted.n_items)
        ids, scores = fitted.recommend(query, k=4)
        assert ids.shape == scores.shape == (0, 4)

    def test_unknown_users(self, fitted: Recommender) -> None:
        query = Query.from_histories([[0, 1, 2], [], [5, 5, 5], [-3, 10_000]])
        scores = fitted.score(query)
        assert scores.shape == (4, fitted.n_items)
        assert np.isfinite(scores).all()
        # out-of-range history entries are ignored: the last row equals an empty history
        np.testing.assert_array_equal(scores[3], scores[1])
        ids, _ = fitted.recommend(query, k=5)
        assert ((ids >= 0) & (ids < fitted.n_items)).all()

    # -- recommend -------------------------------------------------------------------------------
    def test_recommend_sorted(self, fitted: Recommender, query: Query) -> None:
        k = 7
        ids, scores = fitted.recommend(query, k=k, exclude_seen=False)
        assert ids.shape == scores.shape == (len(query), k)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert ((ids >= 0) & (ids < fitted.n_items)).all()
        assert (np.diff(scores, axis=1) <= 0).all()
        full = fitted.score(query)
        np.testing.assert_array_equal(np.take_along_axis(full, ids, axis=1), scores)
        # the k-th best returned score is at least every score not returned
        for row in range(len(query)):
            rest = np.delete(full[row], ids[row])
            assert scores[row, -1] >= rest.max()
        for row in ids:
            assert len(set(row.tolist())) == k

    def test_exclude_seen(self, fitted: Recommender, query: Query) -> None:
        ids, scores = fitted.recommend(query, k=fitted.n_items, exclude_seen=True)
        for row, history in enumerate(query.histories):
            valid = ids[row][ids[row] >= 0]
            assert not set(valid.tolist()) & set(history.tolist())
            assert len(valid) == fitted.n_items - len(set(history.tolist()))
            assert np.isneginf(scores[row][ids[row] < 0]).all()

    def test_candidates(self, fitted: Recommender, query: Query) -> None:
        candidates = np.array([1, 9, 17, 30])
        ids, scores = fitted.recommend(query, k=3, exclude_seen=False, candidates=candidates)
        assert set(ids.ravel().tolist()) <= set(candidates.tolist())
        # fewer candidates than k: padding with -1 / -inf
        ids, scores = fitted.recommend(query, k=6, exclude_seen=False, candidates=candidates)
        assert (ids[:, :4] >= 0).all()
        assert set(ids[:, :4].ravel().tolist()) <= set(candidates.tolist())
        assert (ids[:, 4:] == -1).all() and np.isneginf(scores[:, 4:]).all()

    def test_candidates_and_exclude_seen(self, fitted: Recommender) -> None:
        query = Query.from_histories([[1, 9]])
        ids, _ = fitted.recommend(query, k=4, exclude_seen=True, candidates=[1, 9, 17, 30])
        assert sorted(ids[0, :2].tolist()) == [17, 30]
        assert (ids[0, 2:] == -1).all()

    def test_k_larger_than_catalogue(self, fitted: Recommender, query: Query) -> None:
        n = fitted.n_items
        ids, scores = fitted.recommend(query, k=n + 5, exclude_seen=False)
        assert ids.shape == (len(query), n + 5)
        for row in ids:
            assert sorted(row[:n].tolist()) == list(range(n))
        assert (ids[:, n:] == -1).all() and np.isneginf(scores[:, n:]).all()

    def test_k_must_be_positive(self, fitted: Recommender, query: Query) -> None:
        with pytest.raises(ValueError, match="k must be"):
            fitted.recommend(query, k=0)

    # -- persistence -----------------------------------------------------------------------------
    def test_save_load_roundtrip(self, fitted: Recommender, query: Query, tmp_path: Path) -> None:
        path = fitted.save(tmp_path / "model")
        files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
        assert {"weights.safetensors", "meta.json", "config.json"} <= files
        # only safetensors, JSON and Parquet: nothing pickled under any name
        assert {Path(f).suffix for f in files} <= {".safetensors", ".json", ".parquet"}
        for file in path.rglob("*.json"):
            json.loads(file.read_text())
        for file in path.rglob("*.parquet"):
            assert file.read_bytes()[:4] == b"PAR1"
        with safe_open(str(path / "weights.safetensors"), framework="numpy") as weights:
            assert set(weights.keys()) == set(fitted._state())

        loaded = Recommender.load(path)
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        assert loaded.users_ == fitted.users_ and loaded.items_ == fitted.items_
        np.testing.assert_array_equal(loaded.score(query), fitted.score(query))
        unknown = Query.from_histories([[3, 4], []])
        np.testing.assert_array_equal(loaded.score(unknown), fitted.score(unknown))
        assert type(fitted).load(path).config == fitted.config

    # -- behaviour -------------------------------------------------------------------------------
    @pytest.mark.parametrize("block", range(N_BLOCKS))
    def test_block_structure(self, fitted: Recommender, block: int) -> None:
        """Half a block as history: the other half of that block ranks first."""
        items = block_items(block)
        rng = np.random.default_rng(block)
        history = rng.choice(items, ITEMS_PER_BLOCK // 2, replace=False)
        held_out = np.setdiff1d(items, history)
        ids, _ = fitted.recommend(Query.from_histories([history]), k=len(held_out))
        assert set(ids[0].tolist()) == set(held_out.tolist())

    def test_unseen_block_items_rank_first(self, fitted: Recommender) -> None:
        """A training user's unseen items of their own block rank first."""
        data = block_data()
        for user in range(0, data.n_users, 5):
            block = user // USERS_PER_BLOCK
            unseen = np.setdiff1d(block_items(block), data.history(user))
            ids, _ = fitted.recommend(Query.for_users(data, [user]), k=len(unseen))
            assert set(ids[0].tolist()) == set(unseen.tolist()), f"user {user}"
