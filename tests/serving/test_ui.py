"""The web UI's pages and JSON routes through TestClient (the browser test drives the pages)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recpilot.serving.app import RequestStats, create_app
from recpilot.serving.webui import ASSETS, PAGES, UI_DIR, finite_json

from .conftest import READ_KEY, WRITE_KEY, item, make_settings

W = {"X-API-Key": WRITE_KEY}


@pytest.fixture
def artifact_with_metrics(tmp_path: Path, artifact: Path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(artifact, dest)
    (dest / "metrics.json").write_text(
        '{"holdout": "newest event per user", "metrics": {"NDCG@10": 0.4321, "HR@10": NaN}}'
    )
    return dest


@pytest.fixture
def client(tmp_path: Path, artifact_with_metrics: Path) -> Iterator[TestClient]:
    settings = make_settings(artifact_with_metrics, f"sqlite:///{tmp_path / 'ui.db'}")
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_ui_file_ships_with_the_package() -> None:
    for name in [*ASSETS, *PAGES.values()]:
        assert (UI_DIR / name).is_file(), name


def test_pages_and_assets_carry_a_strict_content_security_policy(client: TestClient) -> None:
    for path in ("/ui", "/ui/metrics", "/ui/static/app.js", "/ui/static/style.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    page = client.get("/ui").text
    assert "<script>" not in page and "onclick" not in page  # no inline code (the CSP forbids it)
    assert "/ui/static/app.js" in page
    assert "/ui/static/metrics.js" in client.get("/ui/metrics").text


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    for name in ("index.html", "..%2Fwebui.py", "secret.js", "..%2F..%2Fconfig.py"):
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"] == "not_found"
    assert "/ui" not in client.get("/openapi.json").json()["paths"]


def test_ui_can_be_switched_off(tmp_path: Path, artifact: Path) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'off.db'}", ui=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui").status_code == 404
        assert client.get("/ui/api/stats").status_code == 404


def test_config_and_key_check(client: TestClient) -> None:
    config = client.get("/ui/api/config").json()
    assert config["model_name"] == "itemknn" and config["keys_configured"]
    assert config["default_k"] == 10 and config["read_requires_key"] is False
    assert client.get("/ui/api/key").status_code == 401
    assert (
        client.get("/ui/api/key", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
    )
    assert client.get("/ui/api/key", headers=W).json() == {
        "name": "writer",
        "scopes": ["read", "write"],
    }
    assert client.get("/ui/api/key", headers={"X-API-Key": READ_KEY}).json()["scopes"] == ["read"]


def test_key_check_explains_a_server_without_keys(tmp_path: Path, artifact: Path) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'nokey.db'}", api_keys=[])
    with TestClient(create_app(settings)) as client:
        response = client.get("/ui/api/key", headers=W)
        assert response.status_code == 401 and "RECPILOT_API_KEY" in response.json()["message"]


def test_users_and_history_need_a_key_even_when_reads_are_open(client: TestClient) -> None:
    events = [
        {
            "event_id": f"e{n}",
            "user_id": user,
            "item_id": item(0, n),
            "timestamp": 1_700_000_000 + n,
        }
        for n, user in enumerate(["ann", "bob", "ann"])
    ]
    assert client.post("/events", json={"events": events}, headers=W).status_code == 200
    client.put(
        "/items",
        json={
            "items": [
                {"item_id": item(0, 0), "metadata": {"title": "<b>Zero</b>", "category": "c0"}}
            ]
        },
        headers=W,
    )
    assert client.get("/users/ann/recommendations").status_code == 200  # open read route
    for path in ("/ui/api/users", "/ui/api/users/ann/history"):
        assert client.get(path).status_code == 401, path
    users = client.get("/ui/api/users", headers={"X-API-Key": READ_KEY}).json()["users"]
    assert [u["user_id"] for u in users] == ["ann", "bob"]  # newest first
    assert users[0]["events"] == 2 and users[0]["last_timestamp"] == 1_700_000_002_000
    history = client.get("/ui/api/users/ann/history", headers=W).json()
    assert [e["item_id"] for e in history["events"]] == [item(0, 0), item(0, 2)]
    assert history["events"][0]["title"] == "<b>Zero</b>"  # the page renders it as text
    assert history["events"][0]["category"] == "c0" and history["events"][1]["title"] is None
    assert client.get("/ui/api/users/nobody/history", headers=W).json()["events"] == []
    assert client.get("/ui/api/users", params={"limit": 0}, headers=W).status_code == 422


def test_item_lookup(client: TestClient) -> None:
    client.put(
        "/items",
        json={
            "items": [
                {"item_id": item(1, 1), "metadata": {"title": "One", "category": "c1"}},
                {"item_id": "brand-new", "available": False, "metadata": {"name": "Fresh"}},
            ]
        },
        headers=W,
    )
    body = client.post(
        "/ui/api/items/lookup", json={"item_ids": [item(1, 1), "brand-new", "ghost"]}
    ).json()["items"]
    assert body[item(1, 1)] == {
        "title": "One",
        "category": "c1",
        "available": True,
        "known_to_model": True,
    }
    assert body["brand-new"]["title"] == "Fresh" and not body["brand-new"]["available"]
    assert not body["brand-new"]["known_to_model"]
    assert body["ghost"] == {
        "title": None,
        "category": None,
        "available": True,
        "known_to_model": False,
    }
    too_many = {"item_ids": [f"x{i}" for i in range(501)]}
    assert client.post("/ui/api/items/lookup", json=too_many).status_code == 422


def test_stats_show_offline_metrics_and_live_requests(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/users/ann/recommendations").status_code == 200
    client.post("/events", json={"events": []}, headers=W)  # a 422
    stats = client.get("/ui/api/stats").json()
    assert stats["offline_metrics"]["metrics"] == {"NDCG@10": 0.4321, "HR@10": None}
    assert stats["model"]["name"] == "itemknn" and stats["model"]["n_items"] == 32
    assert stats["service"]["recommendation_lists"] == 3
    routes = {(r["method"], r["route"]): r for r in stats["requests"]}
    recs = routes[("GET", "/users/{user_id}/recommendations")]
    assert recs["count"] == 3 and recs["window"] == 3 and recs["server_errors"] == 0
    assert 0 < recs["p50_ms"] <= recs["p95_ms"] <= recs["p99_ms"]
    assert recs["per_second"] > 0
    assert routes[("POST", "/events")]["client_errors"] == 1
    json.dumps(stats, allow_nan=False)


def test_request_stats_keep_a_bounded_window() -> None:
    stats = RequestStats(window=10)
    for n in range(25):
        stats.observe("GET", "/x", 500 if n == 0 else 200, n / 1000)
    (row,) = stats.snapshot()
    assert row["count"] == 25 and row["window"] == 10 and row["server_errors"] == 1
    assert row["p50_ms"] == pytest.approx(19.5)  # the last 10: 15..24 ms


def test_finite_json() -> None:
    assert finite_json({"a": [1.0, float("inf")], "b": {"c": float("nan")}, "d": "x"}) == {
        "a": [1.0, None],
        "b": {"c": None},
        "d": "x",
    }
