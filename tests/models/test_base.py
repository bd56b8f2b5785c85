"""`Query`, `top_k`, the `Recommender` base class and artefact integrity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recpilot.config import EASEConfig, PopularityConfig
from recpilot.errors import ArtifactError, DataError, NotFittedError
from recpilot.models.artifact import META, WEIGHTS
from recpilot.models.base import Query, Recommender, top_k
from recpilot.models.ease import EASERecommender
from recpilot.models.itemknn import ItemKNNRecommender
from recpilot.models.popularity import PopularityRecommender
from tests.models.contract import block_data, interactions


# -- Query ----------------------------------------------------------------------------------------
def test_query_for_users_takes_training_histories() -> None:
    data = block_data()
    query = Query.for_users(data, [0, 3])
    assert len(query) == 2
    assert query.users.tolist() == [0, 3]
    np.testing.assert_array_equal(query.histories[1], data.history(3))


def test_query_from_histories_is_anonymous() -> None:
    query = Query.from_histories([[1, 2], []])
    assert query.users.tolist() == [-1, -1]
    assert query.users.dtype == np.int64
    assert [h.tolist() for h in query.histories] == [[1, 2], []]


def test_query_needs_one_history_per_user() -> None:
    with pytest.raises(ValueError, match="2 users but 1 histories"):
        Query(np.array([0, 1]), (np.array([1]),))


def test_history_matrix_is_binary_and_drops_out_of_range() -> None:
    query = Query.from_histories([[2, 2, 0], [-1, 5, 1], []])
    mat = query.history_matrix(n_items=3)
    assert mat.shape == (3, 3)
    np.testing.assert_array_equal(mat.toarray(), [[1, 0, 1], [0, 1, 0], [0, 0, 0]])


def test_empty_query_history_matrix() -> None:
    assert Query.from_histories([]).history_matrix(4).shape == (0, 4)


# -- top_k ----------------------------------------------------------------------------------------
def test_top_k_orders_and_pads() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]], dtype=np.float32)
    ids, top = top_k(scores, k=5)
    assert ids.tolist() == [[1, 2, 0, -1, -1], [0, 2, 1, -1, -1]]
    assert np.isneginf(top[:, 3:]).all()
    np.testing.assert_array_equal(
        top[:, :3], np.array([[0.9, 0.5, 0.1], [3.0, 2.0, 1.0]], np.float32)
    )


def test_top_k_exclude_and_candidates() -> None:
    scores = np.arange(6, dtype=np.float32)[None, :].repeat(2, axis=0)  # (2, 6), item 5 best
    ids, _ = top_k(scores, k=3, exclude=[np.array([5, 4]), np.array([], np.int64)])
    assert ids.tolist() == [[3, 2, 1], [5, 4, 3]]
    ids, _ = top_k(scores, k=3, exclude=[np.array([5]), np.array([9])], candidates=np.array([0, 5]))
    assert ids.tolist() == [[0, -1, -1], [5, 0, -1]]


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 12)),
        elements=st.floats(-1e3, 1e3, width=32),
    ),
    k=st.integers(1, 15),
)
def test_top_k_equals_full_sort(scores: np.ndarray, k: int) -> None:
    ids, top = top_k(scores, k)
    n_items = scores.shape[1]
    expected = -np.sort(-scores, axis=1)[:, : min(k, n_items)]
    np.testing.assert_array_equal(top[:, : min(k, n_items)], expected)
    np.testing.assert_array_equal(
        np.take_along_axis(scores, ids[:, : min(k, n_items)], axis=1), expected
    )
    assert (ids[:, n_items:] == -1).all()
    for row in ids[:, :n_items]:
        assert len(set(row.tolist())) == len(row)


# -- the base class -------------------------------------------------------------------------------
def test_constructor_takes_config_or_options() -> None:
    assert PopularityRecommender(weighted=True).config.weighted
    assert PopularityRecommender(PopularityConfig(weighted=True)).config.weighted
    with pytest.raises(TypeError, match="either"):
        PopularityRecommender(PopularityConfig(), weighted=True)
    with pytest.raises(TypeError, match="expects a PopularityConfig"):
        PopularityRecommender(EASEConfig())  # type: ignore[arg-type]


def test_constructor_validates_options() -> None:
    with pytest.raises(ValueError, match="neighbours"):
        ItemKNNRecommender(neighbours=0)
    with pytest.raises(ValueError, match="unknown_option"):
        EASERecommender(unknown_option=1)


def test_unfitted_errors_say_what_to_do() -> None:
    model = PopularityRecommender()
    with pytest.raises(NotFittedError, match=r"not fitted yet: call fit\(data\) or load\(path\)"):
        model.score(Query.from_histories([[1]]))
    with pytest.raises(NotFittedError):
        _ = model.n_items
    assert "not fitted" in repr(model)


def test_fit_refuses_empty_data() -> None:
    empty = block_data().with_rows(np.zeros(block_data().n_events, dtype=bool))
    with pytest.raises(DataError, match="no events"):
        PopularityRecommender().fit(empty)


def test_models_keep_the_vocabularies() -> None:
    data = interactions([7, 7, 9], [30, 10, 20])
    model = PopularityRecommender().fit(data)
    assert model.items_ is not None and model.users_ is not None
    assert model.items_.lookup([0, 1, 2]) == [10, 20, 30]
    assert model.users_.lookup([0, 1]) == [7, 9]


# -- artefacts ------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return PopularityRecommender().fit(block_data()).save(tmp_path / "popularity")


def test_meta_lists_checksums(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    assert meta["model"] == "popularity"
    assert meta["n_items"] == block_data().n_items
    assert set(meta["sha256"]) >= {WEIGHTS, "config.json"}


def test_corrupted_weights_are_refused(saved: Path) -> None:
    raw = bytearray((saved / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF
    (saved / WEIGHTS).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="corrupted"):
        Recommender.load(saved)


def test_missing_weights_are_refused(saved: Path) -> None:
    (saved / WEIGHTS).unlink()
    with pytest.raises(ArtifactError, match="incomplete"):
        Recommender.load(saved)


def test_missing_or_broken_meta_is_refused(saved: Path) -> None:
    (saved / META).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Recommender.load(saved)
    (saved / META).unlink()
    with pytest.raises(ArtifactError, match="not a RecPilot artefact"):
        Recommender.load(saved)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        Recommender.load(tmp_path / "nothing")


def test_load_checks_the_class(saved: Path) -> None:
    assert isinstance(PopularityRecommender.load(saved), PopularityRecommender)
    with pytest.raises(TypeError, match="not a EASERecommender"):
        EASERecommender.load(saved)


def test_weights_with_a_wrong_shape_are_refused(tmp_path: Path) -> None:
    """A weights file that passes its checksum but does not fit the vocabulary."""
    model = PopularityRecommender().fit(block_data())
    model.popularity_ = np.ones(3, dtype=np.float32)  # the vocabulary has 32 items
    path = model.save(tmp_path / "bad")
    with pytest.raises(ArtifactError, match=r"shape \(3,\), expected \(32,\)"):
        Recommender.load(path)


def test_weights_missing_an_array_are_refused() -> None:
    model = PopularityRecommender().fit(block_data())
    with pytest.raises(ArtifactError, match="lacks popularity"):
        model._set_state({"other": np.ones(3, dtype=np.float32)})


def test_save_overwrites_atomically(saved: Path) -> None:
    again = PopularityRecommender(weighted=True).fit(block_data()).save(saved)
    assert again == saved
    loaded = Recommender.load(saved)
    assert isinstance(loaded.config, PopularityConfig) and loaded.config.weighted
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]
