"""ANN candidate retrieval through a model's vectors: the same lists as exact scoring, filters
that hold, the fallback when filters take the candidates, and the models without a view."""

from __future__ import annotations

import numpy as np
import pytest

from recpilot.config import ALSConfig, EASEConfig, HSTUConfig, SASRecConfig
from recpilot.models.als import ALSRecommender
from recpilot.models.base import Query
from recpilot.models.ease import EASERecommender
from recpilot.models.sequential import HSTURecommender, SASRecRecommender
from recpilot.serving.retrieval import Retriever, vector_view
from tests.models.contract import interactions

TINY = {
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 1,
    "max_len": 16,
    "training": {"max_epochs": 3, "batch_size": 16, "learning_rate": 3e-3},
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(80), 12)
    items = rng.integers(0, 300, len(users))
    return interactions(users, items, n_items=300)


@pytest.fixture(scope="module")
def sasrec(data):
    return SASRecRecommender(SASRecConfig.model_validate(TINY)).fit(data)


def histories(n: int = 6, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 300, int(rng.integers(1, 10))) for _ in range(n)]


@pytest.mark.parametrize("kind", ["sasrec", "hstu", "als"])
def test_view_reproduces_the_model_scores(kind, data, sasrec) -> None:
    if kind == "sasrec":
        model = sasrec
    elif kind == "hstu":
        model = HSTURecommender(HSTUConfig.model_validate(TINY)).fit(data)
    else:
        model = ALSRecommender(ALSConfig(factors=8, iterations=3)).fit(data)
    view = vector_view(model)
    assert view is not None
    query = Query.from_histories(histories())
    np.testing.assert_allclose(
        view.query(query) @ view.item_vectors.T, model.score(query), rtol=1e-4, atol=1e-4
    )
    empty = Query.from_histories([np.empty(0, dtype=np.int64)])
    np.testing.assert_allclose(view.empty_scores, model.score(empty)[0], rtol=1e-5, atol=1e-5)


def test_models_without_inner_product_scores_have_no_view(data) -> None:
    assert vector_view(EASERecommender(EASEConfig(l2=10.0)).fit(data)) is None
    assert Retriever.for_model(EASERecommender(EASEConfig(l2=10.0)).fit(data)) is None


def test_lists_match_exact_scoring_and_filters_hold(sasrec) -> None:
    retriever = Retriever.for_model(sasrec, candidates=300)  # the whole catalogue: exact
    assert retriever is not None
    blocked = np.zeros(300, dtype=bool)
    blocked[::3] = True
    for h in histories(8):
        ids, scores = retriever.recommend(h, 10, blocked)
        exact_ids, exact_scores = sasrec.recommend(
            Query.from_histories([h]), k=10, exclude_seen=False, candidates=np.flatnonzero(~blocked)
        )
        np.testing.assert_array_equal(ids, exact_ids[0])
        np.testing.assert_allclose(scores, exact_scores[0], rtol=1e-4, atol=1e-4)
        assert not blocked[ids].any()


def test_filters_that_take_every_candidate_fall_back_to_exact(sasrec) -> None:
    retriever = Retriever.for_model(sasrec, candidates=20)
    assert retriever is not None
    h = histories(1)[0]
    fetched, _ = retriever.index.search(retriever.view.query(Query.from_histories([h])), 40)
    blocked = np.zeros(300, dtype=bool)
    blocked[fetched[0]] = True  # every candidate the index would give is blocked
    ids, _ = retriever.recommend(h, 10, blocked)
    assert len(ids) == 10 and not blocked[ids].any()
    assert len(retriever.recommend(h, 10, np.ones(300, dtype=bool))[0]) == 0


def test_score_items_matches_score_columns(sasrec) -> None:
    retriever = Retriever.for_model(sasrec)
    assert retriever is not None
    rows = [np.empty(0, dtype=np.int64), *histories(3)]
    items = np.asarray([5, 17, 250, 3])
    query = Query.from_histories(rows)
    np.testing.assert_allclose(
        retriever.score_items(query, items), sasrec.score(query)[:, items], rtol=1e-4, atol=1e-4
    )


def test_index_is_cached_on_disk(tmp_path, sasrec) -> None:
    first = Retriever.for_model(sasrec, cache_dir=tmp_path / "ann")
    assert first is not None and (tmp_path / "ann" / "index.faiss").is_file()
    second = Retriever.for_model(sasrec, cache_dir=tmp_path / "ann")
    assert second is not None
    assert second.index.fingerprint == first.index.fingerprint


# -- through the service ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sasrec_artifact(tmp_path_factory):
    """A SASRec artefact on the serving tests' block data (string ids)."""
    from recpilot.data.interactions import Interactions
    from tests.serving.conftest import block_events

    data = Interactions.from_frame(block_events())
    config = {**TINY, "training": {**TINY["training"], "max_epochs": 40}}
    model = SASRecRecommender(SASRecConfig.model_validate(config)).fit(data)
    return model.save(tmp_path_factory.mktemp("sasrec") / "model")


def _service(tmp_path, artifact, ann: str):
    from recpilot.serving.service import RecService
    from tests.serving.conftest import make_settings

    return RecService.open(
        make_settings(artifact, f"sqlite:///{tmp_path / f'{ann}.db'}", ann=ann, ann_candidates=64)
    )


def test_service_lists_with_and_without_the_index_agree(tmp_path, sasrec_artifact) -> None:
    from recpilot.serving.store import EventRecord
    from tests.serving.conftest import item

    events = [
        EventRecord("e1", "alice", item(0, 0), "view", 1),
        EventRecord("e2", "alice", item(0, 3), "view", 2),
    ]
    lists = {}
    for ann in ("off", "on"):
        svc = _service(tmp_path, sasrec_artifact, ann)
        try:
            svc.ingest(events)
            first = svc.recommend_for_user("alice", k=6)
            svc.delete_item(first.items[0].item_id)  # unavailable: never recommended again
            second = svc.recommend_for_user("alice", k=6)
            lists[ann] = (first, second)
            assert (svc._retriever(svc.models.current) is not None) == (ann == "on")
            # an ANN search runs on a worker thread, a cached small-catalogue request in place
            assert svc.answers_quickly("alice") == (ann == "off")
            hits = svc.user_scores.hits
            assert [i.item_id for i in svc.recommend_for_user("alice", k=6).items] == [
                i.item_id for i in second.items
            ]
            assert svc.user_scores.hits == hits + 1  # scores / candidates kept for the user
        finally:
            svc.close()
    for before, after in zip(lists["off"], lists["on"], strict=True):
        assert [i.item_id for i in before.items] == [i.item_id for i in after.items]
        assert [i.reason for i in before.items] == [i.reason for i in after.items]
        for a, b in zip(before.items, after.items, strict=True):
            assert a.score == pytest.approx(b.score, rel=1e-4, abs=1e-4)
    first, second = lists["on"]
    gone = first.items[0].item_id
    assert gone not in [i.item_id for i in second.items]
    seen = {item(0, 0), item(0, 3)}
    assert not seen & {i.item_id for i in first.items + second.items}
    assert (sasrec_artifact / "ann" / "index.faiss").is_file()  # cached beside the model


def test_kept_candidates_give_the_same_lists_under_other_filters(sasrec) -> None:
    retriever = Retriever.for_model(sasrec, candidates=60)
    assert retriever is not None
    rng = np.random.default_rng(3)
    for h in histories(5, seed=4):
        found = retriever.candidates_of(h, 10)
        assert (np.diff(found.scores) <= 0).all()  # best first
        for _ in range(3):
            blocked = rng.random(300) < 0.3
            np.testing.assert_array_equal(
                retriever.recommend(h, 10, blocked, found)[0],
                retriever.recommend(h, 10, blocked)[0],
            )
        # a longer list than the kept candidates cover: fetched again, not cut short
        assert len(retriever.recommend(h, 100, None, found)[0]) == 100


def test_one_item_query_vectors_are_cached_and_exact(sasrec) -> None:
    retriever = Retriever.for_model(sasrec)
    assert retriever is not None
    rows = [np.empty(0, dtype=np.int64), np.asarray([7]), np.asarray([42])]
    items = np.asarray([1, 2, 250])
    first = retriever.score_items(Query.from_histories(rows), items)
    assert set(retriever._single) == {7, 42}
    np.testing.assert_allclose(
        first, sasrec.score(Query.from_histories(rows))[:, items], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(retriever.score_items(Query.from_histories(rows), items), first)
