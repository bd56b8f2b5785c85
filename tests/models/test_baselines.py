"""Popularity, item-kNN, EASE and ALS: the contract plus model-specific checks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recpilot.config import ALSConfig, EASEConfig
from recpilot.errors import DataError
from recpilot.models.als import ALSRecommender, als_user_factors
from recpilot.models.base import Query, Recommender
from recpilot.models.ease import EASERecommender, ease_weights
from recpilot.models.itemknn import ItemKNNRecommender, cosine_neighbours
from recpilot.models.popularity import PRIOR_SCALE, PopularityRecommender
from recpilot.models.registry import model_from_config
from tests.models.contract import (
    N_BLOCKS,
    RecommenderContract,
    block_data,
    block_items,
    interactions,
)

# a tiny user × item matrix whose similarities are easy to check by hand
TINY = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [1, 1, 1, 0],
        [0, 0, 1, 1],
        [0, 1, 0, 1],
    ],
    dtype=np.float32,
)


def tiny_data():
    users, items = np.nonzero(TINY)
    return interactions(users, items)


# -- popularity -----------------------------------------------------------------------------------
class TestPopularity(RecommenderContract):
    def make_model(self) -> Recommender:
        return PopularityRecommender()

    @pytest.mark.parametrize("block", range(N_BLOCKS))
    def test_block_structure(self, fitted: Recommender, block: int) -> None:
        """Popularity ignores the block: the most popular items outside the history."""
        history = block_items(block)[::2]
        ids, scores = fitted.recommend(Query.from_histories([history]), k=5)
        counts = block_data().item_counts().astype(np.float32)
        counts[history] = -1
        np.testing.assert_array_equal(scores[0], np.sort(counts)[::-1][:5])
        assert not set(ids[0].tolist()) & set(history.tolist())

    def test_unseen_block_items_rank_first(self, fitted: Recommender) -> None:
        """Same scores for every user (the history only removes items)."""
        data = block_data()
        scores = fitted.score(Query.for_users(data, np.arange(data.n_users)))
        assert (scores == scores[0]).all()

    def test_scores_are_counts(self) -> None:
        data = interactions([0, 0, 1, 1, 2, 2, 2], [2, 1, 2, 0, 2, 1, 1])
        model = PopularityRecommender().fit(data)
        scores = model.score(Query.from_histories([[], [0]]))
        np.testing.assert_array_equal(scores, [[1, 3, 3], [1, 3, 3]])  # duplicates count

    def test_order_is_popularity(self) -> None:
        data = block_data()
        model = PopularityRecommender().fit(data)
        ids, scores = model.recommend(Query.from_histories([[]]), k=data.n_items)
        counts = data.item_counts()
        np.testing.assert_array_equal(scores[0], np.sort(counts)[::-1])
        assert (np.diff(counts[ids[0]]) <= 0).all()
        top5, top5_scores = model.recommend(Query.from_histories([[]]), k=5)
        np.testing.assert_array_equal(top5_scores[0], scores[0, :5])
        np.testing.assert_array_equal(counts[top5[0]], top5_scores[0])

    def test_weighted_sums_weights(self) -> None:
        data = interactions([0, 0, 1], [0, 1, 1], weights=[5.0, 1.0, 1.0])
        plain = PopularityRecommender().fit(data).score(Query.from_histories([[]]))
        weighted = PopularityRecommender(weighted=True).fit(data).score(Query.from_histories([[]]))
        np.testing.assert_array_equal(plain, [[1, 2]])
        np.testing.assert_array_equal(weighted, [[5, 2]])

    def test_exclude_seen_gives_most_popular_unseen(self) -> None:
        data = interactions([0, 1, 2, 3, 0, 1], [0, 0, 0, 0, 1, 1])  # counts 4, 2
        model = PopularityRecommender().fit(data)
        ids, _ = model.recommend(Query.from_histories([[0], []]), k=1)
        assert ids.tolist() == [[1], [0]]


# -- item-kNN -------------------------------------------------------------------------------------
class TestItemKNN(RecommenderContract):
    def make_model(self) -> Recommender:
        return ItemKNNRecommender(neighbours=20)

    def test_cosine_by_hand(self) -> None:
        sim = cosine_neighbours(sp.csr_matrix(TINY), neighbours=10).toarray()
        norms = np.sqrt(TINY.sum(axis=0))  # binary columns: ‖x_i‖ = √count
        expected = np.zeros((4, 4))
        for i in range(4):
            for j in range(4):
                if i != j:
                    expected[i, j] = TINY[:, i] @ TINY[:, j] / (norms[i] * norms[j])
        # e.g. items 0 and 1 share user 0 and user 2: 2 / (√3 · √3)
        assert expected[0, 1] == pytest.approx(2 / 3)
        np.testing.assert_allclose(sim, expected, rtol=1e-6)
        np.testing.assert_allclose(sim, sim.T, rtol=1e-6)
        assert (np.diag(sim) == 0).all()

    def test_shrink(self) -> None:
        sim = cosine_neighbours(sp.csr_matrix(TINY), neighbours=10, shrink=2.0).toarray()
        assert sim[0, 1] == pytest.approx(2 / (3 + 2))
        np.testing.assert_allclose(sim, sim.T, rtol=1e-6)

    def test_top_n_pruning(self) -> None:
        rng = np.random.default_rng(1)
        X = sp.csr_matrix((rng.random((60, 25)) < 0.3).astype(np.float32))
        full = cosine_neighbours(X, neighbours=100).toarray()
        np.testing.assert_allclose(full, full.T, rtol=1e-6)
        pruned = cosine_neighbours(X, neighbours=3)
        assert (np.diff(pruned.indptr) <= 3).all()
        dense = pruned.toarray()
        for i in range(25):
            kept = np.sort(dense[i][dense[i] > 0])[::-1]
            np.testing.assert_allclose(kept, np.sort(full[i])[::-1][: len(kept)], rtol=1e-6)

    def test_blocks_do_not_change_the_result(self) -> None:
        rng = np.random.default_rng(2)
        X = sp.csr_matrix((rng.random((40, 30)) < 0.3).astype(np.float32))
        one = cosine_neighbours(X, neighbours=5, block_size=30)
        many = cosine_neighbours(X, neighbours=5, block_size=7)
        np.testing.assert_array_equal(one.toarray(), many.toarray())

    def test_score_is_sum_of_neighbour_similarities(self) -> None:
        model = ItemKNNRecommender(neighbours=10).fit(tiny_data())
        assert model.similarity_ is not None and model.prior_ is not None
        sim = model.similarity_.toarray()
        scores = model.score(Query.from_histories([[0, 3], []]))
        np.testing.assert_allclose(scores[0], sim[0] + sim[3] + model.prior_, rtol=1e-6)
        # an empty history: the popularity prior alone
        np.testing.assert_array_equal(scores[1], model.prior_)
        assert model.prior_.max() == pytest.approx(PRIOR_SCALE)


# -- EASE -----------------------------------------------------------------------------------------
def ease_reference(X: np.ndarray, l2: float) -> np.ndarray:
    G = X.T.astype(np.float64) @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


class TestEASE(RecommenderContract):
    def make_model(self) -> Recommender:
        return EASERecommender(l2=10.0)

    def test_matches_numpy_reference(self) -> None:
        B = ease_weights(sp.csr_matrix(TINY), l2=0.5)
        assert B.dtype == np.float32
        assert (np.diag(B) == 0).all()
        np.testing.assert_allclose(B, ease_reference(TINY, 0.5), rtol=1e-5, atol=1e-6)

    def test_fitted_weights(self, fitted: Recommender) -> None:
        assert isinstance(fitted, EASERecommender) and fitted.weights_ is not None
        assert (np.diag(fitted.weights_) == 0).all()
        X = block_data().to_csr().toarray()
        np.testing.assert_allclose(fitted.weights_, ease_reference(X, 10.0), rtol=1e-4, atol=1e-6)

    def test_refuses_large_catalogues(self) -> None:
        model = EASERecommender(EASEConfig(max_items=10))
        with pytest.raises(DataError, match=r"max_items=10.*GiB|GiB.*max_items=10"):
            model.fit(block_data())
        assert not model.is_fitted

    def test_l2_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="l2"):
            ease_weights(sp.csr_matrix(TINY), l2=0.0)


# -- ALS ------------------------------------------------------------------------------------------
# one factor per block: with more, ALS also fits the noise items of `block_data`
ALS_CONFIG = ALSConfig(factors=4, iterations=15, regularization=0.05, alpha=10.0, seed=3)


class TestALS(RecommenderContract):
    def make_model(self) -> Recommender:
        return ALSRecommender(ALS_CONFIG.model_copy())

    def test_user_step_matches_implicit(self, fitted: Recommender) -> None:
        """Our batched solve equals implicit's own exact (Cholesky) user recalculation."""
        from implicit.cpu.als import AlternatingLeastSquares

        assert isinstance(fitted, ALSRecommender) and fitted.item_factors_ is not None
        data = block_data()
        users = np.arange(data.n_users)
        ours = fitted.fold_in(Query.for_users(data, users))
        confidence = data.to_csr()
        confidence.data = 1.0 + fitted.config.alpha * confidence.data
        with threadpool_limits(1, "blas"):
            ref = AlternatingLeastSquares(
                factors=fitted.config.factors, regularization=fitted.config.regularization
            )
            ref.item_factors = fitted.item_factors_.copy()
            theirs = ref.recalculate_user(users, confidence)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)

    def test_user_step_close_to_learned_factors(self, fitted: Recommender) -> None:
        """For training users the fold-in is close to what training learned.

        Not equal: implicit's last user update used the previous item factors and a few
        conjugate-gradient steps.
        """
        assert isinstance(fitted, ALSRecommender) and fitted.user_factors_ is not None
        data = block_data()
        users = np.arange(data.n_users)
        folded = fitted.fold_in(Query.for_users(data, users))
        learned = fitted.user_factors_
        error = np.linalg.norm(folded - learned, axis=1) / np.linalg.norm(learned, axis=1)
        assert np.median(error) < 0.05 and error.max() < 0.1

    def test_known_user_without_history_uses_learned_factor(self, fitted: Recommender) -> None:
        assert isinstance(fitted, ALSRecommender) and fitted.user_factors_ is not None
        query = Query(np.array([4, -1]), (np.array([], dtype=np.int64),) * 2)
        X = fitted.fold_in(query)
        np.testing.assert_array_equal(X[0], fitted.user_factors_[4])
        np.testing.assert_array_equal(X[1], 0.0)

    def test_seed_changes_factors(self, fitted: Recommender) -> None:
        other = ALSRecommender(ALS_CONFIG.model_copy(update={"seed": 4})).fit(block_data())
        assert isinstance(fitted, ALSRecommender) and fitted.item_factors_ is not None
        assert other.item_factors_ is not None
        assert not np.array_equal(other.item_factors_, fitted.item_factors_)

    def test_solve_without_regularisation_on_singular_systems(self) -> None:
        rng = np.random.default_rng(0)
        Y = rng.standard_normal((3, 5)).astype(np.float32)  # rank 3 < 5 factors
        H = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]], dtype=np.float32))
        X = als_user_factors(Y, H, regularization=0.0, alpha=2.0)
        assert np.isfinite(X).all()
        Y64 = Y.astype(np.float64)
        A = Y64.T @ Y64 + 2.0 * Y64[[0, 2]].T @ Y64[[0, 2]]
        b = 3.0 * (Y64[0] + Y64[2])
        np.testing.assert_allclose(A @ X[0], b, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(X[1], 0.0)

    def test_chunked_solve_equals_one_chunk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import recpilot.models.als as als

        rng = np.random.default_rng(0)
        Y = rng.standard_normal((30, 4)).astype(np.float32)
        H = sp.csr_matrix((rng.random((9, 30)) < 0.2).astype(np.float32))
        whole = als_user_factors(Y, H, regularization=0.1, alpha=5.0)
        monkeypatch.setattr(als, "CHUNK_CELLS", 16)
        chunked = als_user_factors(Y, H, regularization=0.1, alpha=5.0)
        np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)


# -- all personalised baselines -------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda w: ItemKNNRecommender(neighbours=5, weighted=w),
        lambda w: EASERecommender(l2=1.0, weighted=w),
        lambda w: ALSRecommender(ALS_CONFIG.model_copy(update={"weighted": w})),
    ],
    ids=["itemknn", "ease", "als"],
)
def test_weighted_training_uses_the_weights(make: Callable[[bool], Recommender]) -> None:
    users = [0, 0, 1, 1, 2, 2, 3, 3]
    items = [0, 1, 0, 2, 1, 2, 0, 1]
    weights = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 3.0, 1.0]
    data = interactions(users, items, weights=weights)
    query = Query.from_histories([[0], [1]])
    plain = make(False).fit(data).score(query)
    weighted = make(True).fit(data).score(query)
    assert np.isfinite(weighted).all()
    assert not np.array_equal(plain, weighted)


# -- registry -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("popularity", PopularityRecommender),
        ("itemknn", ItemKNNRecommender),
        ("ease", EASERecommender),
        ("als", ALSRecommender),
    ],
)
def test_registry_builds_every_baseline(name: str, cls: type[Recommender]) -> None:
    model = model_from_config({"name": name})
    assert type(model) is cls and cls.name == name and not model.is_fitted
