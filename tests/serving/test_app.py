"""The HTTP layer through FastAPI's TestClient: every route, bad input, auth, erasure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recpilot.serving.app import create_app
from recpilot.serving.service import RecService

from .conftest import ADMIN_KEY, READ_KEY, WRITE_KEY, item, make_settings

W = {"X-API-Key": WRITE_KEY}
A = {"X-API-Key": ADMIN_KEY}


def events(*pairs: tuple[str, str], prefix: str = "e") -> dict[str, Any]:
    return {
        "events": [
            {"event_id": f"{prefix}{n}", "user_id": u, "item_id": i, "timestamp": 1_700_000_000 + n}
            for n, (u, i) in enumerate(pairs)
        ]
    }


@pytest.fixture
def client(tmp_path: Path, registry_copy: Path) -> Iterator[TestClient]:
    """The app with its own lifespan: store and model opened at start, closed at the end."""
    settings = make_settings(
        registry_copy, f"sqlite:///{tmp_path / 'app.db'}", max_batch_size=5, max_k=50
    )
    with TestClient(create_app(settings)) as client:
        yield client


def item_ids(response: Any) -> list[str]:
    return [i["item_id"] for i in response.json()["items"]]


def test_health_and_openapi(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["model_version"] == "v0001" and health.json()["store_ok"]
    spec = client.get("/openapi.json").json()
    for path in (
        "/events",
        "/users/{user_id}/recommendations",
        "/recommendations",
        "/items/{item_id}/similar",
        "/items",
        "/items/{item_id}",
        "/users/{user_id}",
        "/admin/reload",
        "/health",
        "/metrics",
    ):
        assert path in spec["paths"], path
    schemes = spec["components"]["securitySchemes"].values()
    assert any(s.get("name") == "X-API-Key" for s in schemes)


def test_posted_event_changes_the_next_recommendation(client: TestClient) -> None:
    assert client.post("/events", json=events(("ann", item(0, 0))), headers=W).status_code == 200
    before = client.get("/users/ann/recommendations", params={"k": 4})
    assert before.status_code == 200 and before.json()["model_version"] == "v0001"
    first = item_ids(before)[0]
    assert before.json()["items"][0]["reason"] == f"because you viewed {item(0, 0)}"
    posted = client.post(
        "/events", json=events(("ann", first), ("ann", item(3, 3)), prefix="f"), headers=W
    )
    assert posted.json() == {"received": 2, "stored": 2, "duplicates": 0}
    after = client.get("/users/ann/recommendations", params={"k": 10})
    assert item_ids(after)[:4] != item_ids(before)
    assert first not in item_ids(after) and item(3, 3) not in item_ids(after)


def test_repost_is_idempotent(client: TestClient) -> None:
    batch = events(("bo", item(1, 1)), ("bo", item(1, 2)))
    assert client.post("/events", json=batch, headers=W).json()["stored"] == 2
    assert client.post("/events", json=batch, headers=W).json() == {
        "received": 2,
        "stored": 0,
        "duplicates": 2,
    }
    service: RecService = client.app.state.service  # type: ignore[attr-defined]
    assert service.store.count_events() == 2


def test_timestamps_iso_or_epoch_seconds(client: TestClient) -> None:
    batch = {
        "events": [
            {"event_id": "t1", "user_id": "cy", "item_id": item(0, 1), "timestamp": 1_700_000_000},
            {
                "event_id": "t2",
                "user_id": "cy",
                "item_id": item(0, 2),
                "timestamp": "2023-11-14T22:13:21Z",
            },
            {"event_id": "t3", "user_id": "cy", "item_id": item(0, 3), "event_type": "click"},
        ]
    }
    assert client.post("/events", json=batch, headers=W).status_code == 200
    service: RecService = client.app.state.service  # type: ignore[attr-defined]
    history = service.history("cy")
    assert [h.timestamp for h in history[:2]] == [1_700_000_000_000, 1_700_000_001_000]
    assert history[2].event_type == "click" and history[2].timestamp > 1_700_000_001_000


@pytest.mark.parametrize(
    ("headers", "status", "fragment"),
    [
        ({}, 401, "missing API key"),
        ({"X-API-Key": "wrong-key-0123456789"}, 401, "invalid API key"),
        ({"X-API-Key": READ_KEY}, 403, "'write' scope"),
    ],
)
def test_write_routes_need_a_write_key(
    client: TestClient, headers: dict[str, str], status: int, fragment: str
) -> None:
    for response in (
        client.post("/events", json=events(("x", item(0, 0))), headers=headers),
        client.put("/items", json={"items": [{"item_id": "a"}]}, headers=headers),
        client.delete("/items/a", headers=headers),
    ):
        assert response.status_code == status
        assert fragment in response.json()["message"]
    service: RecService = client.app.state.service  # type: ignore[attr-defined]
    assert service.store.count_events() == 0
    assert service.store.get_item("a") is None


def test_admin_routes_need_the_admin_scope(client: TestClient) -> None:
    assert client.delete("/users/x", headers=W).status_code == 403
    assert client.post("/admin/reload", headers=W).status_code == 403
    assert client.post("/admin/reload").status_code == 401


def test_without_configured_keys_write_routes_refuse(tmp_path: Path, artifact: Path) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'nokeys.db'}", api_keys=[])
    with TestClient(create_app(settings)) as client:
        response = client.post("/events", json=events(("x", item(0, 0))), headers=W)
        assert response.status_code == 401 and "no API key configured" in response.json()["message"]


def test_read_routes_can_require_a_key(tmp_path: Path, artifact: Path) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'r.db'}", read_requires_key=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/users/x/recommendations").status_code == 401
        ok = client.get("/users/x/recommendations", headers={"X-API-Key": READ_KEY})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200  # operations stay open


def test_bad_payloads_get_readable_422(client: TestClient) -> None:
    missing = client.post(
        "/events", json={"events": [{"event_id": "1", "user_id": "u"}]}, headers=W
    )
    assert missing.status_code == 422
    body = missing.json()
    assert body["error"] == "invalid_request"
    assert "body.events.0.item_id: Field required" in body["message"]
    assert "Traceback" not in missing.text
    unknown_field = client.post("/events", json=events(("u", "i")) | {"extra": 1}, headers=W)
    assert "extra: Extra inputs are not permitted" in unknown_field.json()["message"]
    not_json = client.post(
        "/events", content=b"{not json", headers={**W, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and "JSON" in not_json.json()["message"]
    bad_time = client.post(
        "/events",
        json={"events": [{"event_id": "1", "user_id": "u", "item_id": "i", "timestamp": "soon"}]},
        headers=W,
    )
    assert bad_time.status_code == 422 and "timestamp" in bad_time.json()["message"]
    bad_k = client.get("/users/u/recommendations", params={"k": 0})
    assert bad_k.status_code == 422 and "query.k" in bad_k.json()["message"]
    big_k = client.get("/users/u/recommendations", params={"k": 51})
    assert big_k.status_code == 422 and "between 1 and 50" in big_k.json()["message"]
    empty = client.post("/events", json={"events": []}, headers=W)
    assert empty.status_code == 422 and "at least 1" in empty.json()["message"]


def test_size_limits(client: TestClient) -> None:
    too_many = events(*[("u", item(0, j)) for j in range(6)])  # the limit is 5
    response = client.post("/events", json=too_many, headers=W)
    assert response.status_code == 413 and "limit of 5" in response.json()["message"]
    huge = {"events": [{"event_id": "1", "user_id": "u", "item_id": "x" * 2_000_000}]}
    response = client.post("/events", json=huge, headers=W)
    assert response.status_code == 413 and "bytes" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"events": ['
        for _ in range(20):
            yield b" " * 100_000
        yield b"]}"

    streamed = client.post(
        "/events", content=chunks(), headers={**W, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    long_history = client.post("/recommendations", json={"history": ["a"] * 501})
    assert long_history.status_code == 413


def test_catalogue_routes_hide_unavailable_items(client: TestClient) -> None:
    block = [item(1, j) for j in range(1, 8)]
    put = client.put(
        "/items",
        json={"items": [{"item_id": i, "available": False} for i in block[:4]]},
        headers=W,
    )
    assert put.status_code == 200 and put.json() == {"written": 4}
    for i in block[4:]:
        assert client.delete(f"/items/{i}", headers=W).status_code == 204
    anonymous = client.post("/recommendations", json={"history": [item(1, 0)], "k": 30})
    similar = client.get(f"/items/{item(1, 0)}/similar", params={"k": 30})
    for response in (anonymous, similar):
        assert response.status_code == 200
        assert not set(block) & set(item_ids(response))


def test_category_filter(client: TestClient) -> None:
    client.put(
        "/items",
        json={"items": [{"item_id": item(2, 0), "metadata": {"category": "tools", "title": "T"}}]},
        headers=W,
    )
    response = client.get("/users/newcomer/recommendations", params={"category": "tools"})
    assert item_ids(response) == [item(2, 0)]


def test_anonymous_recommendations_ignore_unknown_items(client: TestClient) -> None:
    response = client.post(
        "/recommendations", json={"history": ["ghost", item(3, 0)], "k": 3, "user_id": "anon"}
    )
    body = response.json()
    assert response.status_code == 200 and body["ignored_items"] == ["ghost"]
    assert body["user_id"] == "anon" and len(body["items"]) == 3
    assert all(i["reason"] == f"because you viewed {item(3, 0)}" for i in body["items"])


def test_similar_items_route(client: TestClient) -> None:
    response = client.get(f"/items/{item(0, 4)}/similar", params={"k": 2})
    assert response.status_code == 200 and len(response.json()["items"]) == 2
    missing = client.get("/items/nothing-like-it/similar")
    assert missing.status_code == 404 and "unknown item id" in missing.json()["message"]


def test_erase_user_over_http(client: TestClient) -> None:
    stranger = item_ids(client.get("/users/somebody-new/recommendations"))
    client.post("/events", json=events(("dee", item(2, 2)), ("dee", item(2, 3))), headers=W)
    assert item_ids(client.get("/users/dee/recommendations")) != stranger
    erased = client.delete("/users/dee", headers=A)
    assert erased.status_code == 200
    assert erased.json()["events_deleted"] == 2
    assert item_ids(client.get("/users/dee/recommendations")) == stranger
    service: RecService = client.app.state.service  # type: ignore[attr-defined]
    service.impressions.flush()
    client.delete("/users/dee", headers=A)
    assert service.store.user_row_counts("dee") == {"events": 0, "impressions": 0}


def test_reload_over_http_with_concurrent_requests(client: TestClient) -> None:
    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            response = client.post("/recommendations", json={"history": [item(0, 1)], "k": 3})
            if response.status_code != 200:
                errors.append(response.text)
                return
            seen.add(response.json()["model_version"])

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        swapped = client.post("/admin/reload", json={"version": "v0002"}, headers=A)
        back = client.post("/admin/reload", headers=A)  # the current pointer now says v0002
        unknown = client.post("/admin/reload", json={"version": "v9999"}, headers=A)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert swapped.json() == {"previous": "v0001", "current": "v0002"}
    assert back.json() == {"previous": "v0002", "current": "v0002"}
    assert unknown.status_code == 409 and "still serving" in unknown.json()["message"]
    assert client.get("/health").json()["model_version"] == "v0002"
    assert seen <= {"v0001", "v0002"}


def test_metrics(client: TestClient) -> None:
    client.get("/users/m/recommendations")
    client.post("/events", json=events(("m", item(0, 0))), headers=W)
    text = client.get("/metrics").text
    assert (
        'recpilot_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"} 1.0'
        in text
    )
    assert "recpilot_http_request_duration_seconds_bucket" in text
    assert 'recpilot_model_info{model="itemknn",version="v0001"} 1.0' in text
    assert "recpilot_events_stored_total 1.0" in text


def test_errors_never_leak_stack_traces(
    tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'boom.db'}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        service: RecService = client.app.state.service  # type: ignore[attr-defined]

        def boom(*_: object, **__: object) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(service, "recommend_for_user", boom)
        response = client.get("/users/u/recommendations")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "internal server error (logged)",
        "details": [],
    }
    assert "secret" not in response.text


def test_cli_serve_builds_the_app_from_flags_and_environment(
    tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from recpilot.cli import app as cli

    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    monkeypatch.setenv("RECPILOT_API_KEY", "env-key-0123456789")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["serve", "--artifact", str(artifact), "--db", db, "--port", "8123"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)
    with TestClient(started["app"]) as client:
        key = {"X-API-Key": "env-key-0123456789"}
        assert (
            client.post("/events", json=events(("z", item(0, 0))), headers=key).status_code == 200
        )
        assert client.delete("/users/z", headers=key).json()["events_deleted"] == 1
    short = CliRunner().invoke(cli, [*args, "--api-key", "short"])
    assert short.exit_code == 2 and "16 characters" in short.output
    missing = CliRunner().invoke(cli, ["serve", "--db", db])
    assert missing.exit_code == 2 and "artifact" in missing.output
