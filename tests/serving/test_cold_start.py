"""Cold start in the service: new items from their text, onboarding, new users' first event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from recpilot.config import SASRecConfig
from recpilot.content import HashingEncoder, catalogue_vectors
from recpilot.content.recommender import TextKNNRecommender
from recpilot.data.interactions import Interactions
from recpilot.models.base import Recommender
from recpilot.models.sequential import SASRecRecommender
from recpilot.serving.app import create_app
from recpilot.serving.service import RecService

from .conftest import ITEMS_PER_BLOCK, N_BLOCKS, WRITE_KEY, block_events, item, make_settings

W = {"X-API-Key": WRITE_KEY}
TOPICS = (
    "space rocket astronaut",
    "kitchen cooking recipe",
    "jungle safari animal",
    "castle knight sword",
)
ENCODER = "hashing-v1-64"


def topic_table() -> pl.DataFrame:
    ids = [item(b, j) for b in range(N_BLOCKS) for j in range(ITEMS_PER_BLOCK)]
    return pl.DataFrame(
        {
            "item_id": ids,
            "title": [
                f"{TOPICS[b]} story {j}" for b in range(N_BLOCKS) for j in range(ITEMS_PER_BLOCK)
            ],
        }
    )


def topic_data() -> Interactions:
    return Interactions.from_frame(block_events(), item_table=topic_table())


def fit_textknn(data: Interactions) -> Recommender:
    return (
        TextKNNRecommender().set_text_vectors(catalogue_vectors(data, HashingEncoder(64))).fit(data)
    )


def fit_hybrid(data: Interactions) -> Recommender:
    config = SASRecConfig.model_validate(
        {
            "d_model": 16,
            "n_layers": 1,
            "max_len": 8,
            "text_features": True,
            "id_dropout": 0.5,
            "training": {"max_epochs": 15, "batch_size": 8, "learning_rate": 5e-3},
        }
    )
    vectors = catalogue_vectors(data, HashingEncoder(64))
    return SASRecRecommender(config).set_text_vectors(vectors).fit(data)


@pytest.fixture(scope="module", params=["textknn", "hybrid"])
def text_artifact(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = topic_data()
    model = fit_textknn(data) if request.param == "textknn" else fit_hybrid(data)
    return model.save(tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture
def client(tmp_path: Path, text_artifact: Path) -> Iterator[TestClient]:
    settings = make_settings(
        text_artifact, f"sqlite:///{tmp_path / 'cold.db'}", text_encoder=ENCODER, max_k=50
    )
    with TestClient(create_app(settings)) as client:
        yield client


def recs(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_new_item_with_text_is_recommendable_at_the_next_request(client: TestClient) -> None:
    history = [item(0, 0), item(0, 1), item(0, 2)]
    before = recs(client.post("/recommendations", json={"history": history, "k": 40}))
    assert "fresh-rocket" not in [i["item_id"] for i in before]
    put = client.put(
        "/items",
        json={
            "items": [
                {"item_id": "fresh-rocket", "metadata": {"title": "space rocket astronaut launch"}}
            ]
        },
        headers=W,
    )
    assert put.status_code == 200, put.text
    after = recs(client.post("/recommendations", json={"history": history, "k": 40}))
    by_id = {i["item_id"]: i for i in after}
    assert "fresh-rocket" in by_id
    assert by_id["fresh-rocket"]["reason"].startswith("new item")
    # a space-history ranks it above every item of the other topics
    order = [i["item_id"] for i in after]
    others = [n for n, i in enumerate(order) if not i.startswith("i0_") and i != "fresh-rocket"]
    assert order.index("fresh-rocket") < min(others)
    # and it can be a history item itself: its topic comes first
    first = recs(client.post("/recommendations", json={"history": ["fresh-rocket"], "k": 3}))
    assert all(i["item_id"].startswith("i0_") for i in first)


def test_onboarding_paths_are_named_in_the_reasons(client: TestClient) -> None:
    chosen = recs(
        client.post("/recommendations", json={"history": [], "chosen_items": [item(1, 0)], "k": 3})
    )
    assert all(i["reason"] == f"because you chose {item(1, 0)}" for i in chosen)
    assert all(i["item_id"].startswith("i1_") for i in chosen)
    put = client.put(
        "/items",
        json={
            "items": [{"item_id": item(2, j), "metadata": {"category": "jungle"}} for j in range(3)]
        },
        headers=W,
    )
    assert put.status_code == 200
    by_category = recs(
        client.get(
            "/users/nobody/recommendations", params={"k": 5, "chosen_categories": ["jungle"]}
        )
    )
    assert [i["reason"] for i in by_category[:3]] == ["popular in jungle"] * 3
    assert {i["item_id"] for i in by_category[:3]} == {item(2, j) for j in range(3)}
    plain = recs(client.get("/users/nobody/recommendations", params={"k": 3}))
    assert all(i["reason"] == "popular now" for i in plain)


def test_a_new_user_is_personalised_from_the_first_event(client: TestClient) -> None:
    event = {
        "event_id": "e1",
        "user_id": "newbie",
        "item_id": item(3, 1),
        "timestamp": 1_700_000_000,
    }
    assert client.post("/events", json={"events": [event]}, headers=W).status_code == 200
    out = recs(client.get("/users/newbie/recommendations", params={"k": 3}))
    assert out[0]["reason"] == f"because you viewed {item(3, 1)}"
    assert all(i["item_id"].startswith("i3_") for i in out)


def test_service_adds_catalogue_items_after_a_restart(tmp_path: Path, text_artifact: Path) -> None:
    settings = make_settings(text_artifact, f"sqlite:///{tmp_path / 'r.db'}", text_encoder=ENCODER)
    svc = RecService.open(settings)
    try:
        svc.put_items([("late", True, {"title": "kitchen cooking recipe soup"})])
        assert svc.models.current.item_index("late") >= 0
    finally:
        svc.close()
    again = RecService.open(settings)  # the artefact on disk does not know it; the store does
    try:
        assert again.models.current.item_index("late") >= 0
        ids = [i.item_id for i in again.recommend_for_history([item(1, 0)], k=12).items]
        assert "late" in ids
    finally:
        again.close()


def test_id_only_models_leave_new_items_to_exploration(tmp_path: Path, artifact: Path) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'id.db'}", text_encoder=ENCODER)
    svc = RecService.open(settings)
    try:
        svc.put_items([("x-new", True, {"title": "space rocket"})])
        assert svc.models.current.item_index("x-new") == -1
    finally:
        svc.close()


def test_item_age_model_reads_release_times_of_added_items(tmp_path: Path) -> None:
    """A hybrid with ``freshness``: an item added with a release time ages from it; one
    without stays "new" (never seen) until retraining; both are served from their text."""
    from recpilot.models.nn.freshness import NEVER

    data = topic_data()
    config = SASRecConfig.model_validate(
        {
            "d_model": 16,
            "n_layers": 1,
            "max_len": 8,
            "text_features": True,
            "freshness": True,
            "text_only_boost": 1.0,
            "training": {"max_epochs": 3, "batch_size": 8, "learning_rate": 5e-3},
        }
    )
    model = SASRecRecommender(config).set_text_vectors(catalogue_vectors(data, HashingEncoder(64)))
    artifact = model.fit(data).save(tmp_path / "fresh")
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'f.db'}", text_encoder=ENCODER)
    svc = RecService.open(settings)
    try:
        released = "2001-02-03T00:00:00+00:00"
        svc.put_items(
            [
                ("dated", True, {"title": "space rocket launch", "release_date": released}),
                ("undated", True, {"title": "space rocket orbit"}),
            ]
        )
        served = svc.models.current
        fresh = served.model.module_.freshness  # type: ignore[attr-defined]
        assert int(fresh.first_seen[served.item_index("dated")]) == 981_158_400_000
        assert int(fresh.first_seen[served.item_index("undated")]) == NEVER
        ids = [i.item_id for i in svc.recommend_for_history([item(0, 0)], k=40).items]
        assert {"dated", "undated"} <= set(ids)
    finally:
        svc.close()
