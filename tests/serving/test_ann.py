"""The faiss candidate index: recall against exact search, padding, persistence, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from recpilot.errors import ArtifactError
from recpilot.serving.ann import CandidateIndex, IndexParams, load_or_build, recall_at


def exact_top(items: np.ndarray, queries: np.ndarray, n: int) -> np.ndarray:
    scores = queries @ items.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :n]


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # clustered items, as learned embeddings are: inner-product search has structure to find
    centres = rng.normal(size=(20, 16))
    items = centres[rng.integers(0, 20, 4000)] + 0.5 * rng.normal(size=(4000, 16))
    queries = centres[rng.integers(0, 20, 50)] + 0.5 * rng.normal(size=(50, 16))
    return items.astype(np.float32), queries.astype(np.float32)


def test_recall_against_exact_search(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = vectors
    index = CandidateIndex.build(items, show_progress=False)
    ids, scores = index.search(queries, 50)
    exact = exact_top(items, queries, 50)
    assert recall_at(ids, exact) >= 0.9
    # scores are the true inner products, best first
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ items.T, ids, axis=1), rtol=1e-4, atol=1e-4
    )
    assert (np.diff(scores, axis=1) <= 1e-5).all()


def test_a_tiny_search_list_loses_recall(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """The recall check above can fail: a starved search finds clearly fewer true neighbours."""
    items, queries = vectors
    starved = CandidateIndex.build(
        items, IndexParams(m=2, ef_construction=4, ef_search=1), show_progress=False
    )
    good = CandidateIndex.build(items, show_progress=False)
    exact = exact_top(items, queries, 10)
    assert recall_at(starved.search(queries, 10)[0], exact) < recall_at(
        good.search(queries, 10)[0], exact
    )


def test_more_results_than_items_are_padded() -> None:
    items = np.eye(3, dtype=np.float32)
    index = CandidateIndex.build(items, show_progress=False)
    ids, scores = index.search(np.asarray([[0.0, 1.0, 0.0]], dtype=np.float32), 5)
    assert ids.shape == scores.shape == (1, 5)
    assert ids[0, 0] == 1 and sorted(ids[0, :3].tolist()) == [0, 1, 2]
    assert (ids[0, 3:] == -1).all() and np.isneginf(scores[0, 3:]).all()


def test_save_load_gives_identical_results(tmp_path, vectors) -> None:
    items, queries = vectors
    index = CandidateIndex.build(items, show_progress=False)
    index.save(tmp_path / "idx")
    loaded = CandidateIndex.load(tmp_path / "idx", items)
    for a, b in zip(index.search(queries, 20), loaded.search(queries, 20), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_index_of_other_vectors_is_refused_and_rebuilt(tmp_path, vectors) -> None:
    items, _ = vectors
    CandidateIndex.build(items, show_progress=False).save(tmp_path / "idx")
    changed = items.copy()
    changed[0] += 1.0
    with pytest.raises(ArtifactError, match="other item vectors"):
        CandidateIndex.load(tmp_path / "idx", changed)
    rebuilt = load_or_build(tmp_path / "idx", changed)
    # the rebuilt index replaced the stale one on disk, and now matches the new vectors
    assert CandidateIndex.load(tmp_path / "idx", changed).fingerprint == rebuilt.fingerprint


def test_bad_input_says_what_is_wrong(tmp_path) -> None:
    with pytest.raises(ValueError, match="empty catalogue"):
        CandidateIndex.build(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="2-d"):
        CandidateIndex.build(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        CandidateIndex.build(np.full((3, 2), np.nan, dtype=np.float32))
    index = CandidateIndex.build(np.eye(4, dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match="3 dimensions, the index has 4"):
        index.search(np.zeros((1, 3), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="at least 1"):
        index.search(np.zeros((1, 4), dtype=np.float32), 0)
    with pytest.raises(ArtifactError, match="cannot read"):
        CandidateIndex.load(tmp_path / "missing")


def test_items_added_later_are_found(vectors) -> None:
    items, queries = vectors
    index = CandidateIndex.build(items[:-200], show_progress=False)
    index.add(items[-200:])
    assert index.n_items == len(items)
    exact = exact_top(items, queries, 20)
    found, _ = index.search(queries, 20)
    assert recall_at(found, exact) >= 0.9
    late = set(range(len(items) - 200, len(items)))
    assert late & set(exact.ravel().tolist()), "the check needs late items among the true tops"
    assert late & set(found.ravel().tolist())


def test_long_vectors_do_not_crowd_out_the_true_top() -> None:
    """Inner products favour long vectors; the inner-product graph still finds the top items."""
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(3000, 8))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    items = (directions * rng.lognormal(0.0, 0.8, size=(3000, 1))).astype(np.float32)
    queries = rng.normal(size=(40, 8)).astype(np.float32)
    index = CandidateIndex.build(items, show_progress=False)
    assert recall_at(index.search(queries, 10)[0], exact_top(items, queries, 10)) >= 0.9
