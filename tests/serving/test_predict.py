"""POST /predict: behaviour probabilities of 100 candidates in one batched model call."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from recpilot.behaviour.dataset import build_dataset
from recpilot.behaviour.models import BehaviourModel, LogisticBehaviourModel
from recpilot.data.schema import EventLog, canonical
from recpilot.serving.app import create_app

from .conftest import READ_KEY, WRITE_KEY, make_settings

BLOCKS, ITEMS = 4, 30


def shop_log(seed: int = 0) -> EventLog:
    """Users of block b view items of every block and click their own block's items."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(BLOCKS):
        for u in range(25):
            for t in range(30):
                blk = b if rng.random() < 0.6 else int(rng.integers(BLOCKS))
                item = f"i{blk}_{int(rng.integers(ITEMS))}"
                ts = 1_700_000_000_000 + t * 600_000 + u * 1000
                rows.append((f"u{b}_{u}", item, ts, "view"))
                if rng.random() < (0.7 if blk == b else 0.05):
                    rows.append((f"u{b}_{u}", item, ts + 5_000, "click"))
    frame = pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event_type"], orient="row"
    )
    items = pl.DataFrame(
        {
            "item_id": [f"i{b}_{j}" for b in range(BLOCKS) for j in range(ITEMS)],
            "category": [f"c{b}" for b in range(BLOCKS) for _ in range(ITEMS)],
        }
    )
    return EventLog(canonical(frame), items=items)


@pytest.fixture(scope="module")
def behaviour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = LogisticBehaviourModel().fit(build_dataset(shop_log()))
    return model.save(tmp_path_factory.mktemp("behaviour") / "model")


@pytest.fixture
def client(tmp_path: Path, artifact: Path, behaviour_dir: Path) -> Iterator[TestClient]:
    """The served item-kNN artefact with a behaviour/ folder beside its weights."""
    served = tmp_path / "artifact"
    shutil.copytree(artifact, served)
    shutil.copytree(behaviour_dir, served / "behaviour")
    settings = make_settings(served, f"sqlite:///{tmp_path / 'p.db'}")
    with TestClient(create_app(settings)) as client:
        yield client


def test_predict_scores_100_candidates_in_one_call(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = LogisticBehaviourModel._predict_raw

    def counting(self: LogisticBehaviourModel, batch: object) -> object:
        calls.append(len(batch))  # type: ignore[arg-type]
        return original(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(LogisticBehaviourModel, "_predict_raw", counting)
    history = [f"i1_{j}" for j in range(8)]
    candidates = [f"i{b}_{j}" for b in range(BLOCKS) for j in range(25)]
    assert len(candidates) == 100
    r = client.post(
        "/predict", json={"item_ids": [*candidates, "nope"], "history": history, "user_id": "anon"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert calls == [100]  # one batched model call
    assert body["unknown_items"] == ["nope"]
    assert body["model_version"].startswith("logistic-")
    preds = body["predictions"]
    assert [p["item_id"] for p in preds] == candidates
    click = np.array([p["probabilities"]["click"] for p in preds])
    assert ((click >= 0) & (click <= 1)).all()
    own = click[25:50].mean()  # block 1, the history's block
    assert own > np.delete(click, np.s_[25:50]).mean() + 0.2


def test_predict_reads_the_stored_history(client: TestClient) -> None:
    events = []
    for n in range(6):
        for k, kind in enumerate(("view", "click")):
            events.append(
                {
                    "event_id": f"e{n}{k}",
                    "user_id": "u9",
                    "item_id": f"i2_{n}",
                    "event_type": kind,
                    "timestamp": 1_700_000_000 + 60 * n + 5 * k,
                }
            )
    posted = client.post("/events", json={"events": events}, headers={"X-API-Key": WRITE_KEY})
    assert posted.status_code == 200
    items = ["i2_10", "i0_10", "i3_10"]
    body = {"user_id": "u9", "item_ids": items, "behaviours": ["click"]}
    stored = client.post("/predict", json=body)
    assert stored.status_code == 200, stored.text
    p = {x["item_id"]: x["probabilities"] for x in stored.json()["predictions"]}
    assert set(p["i2_10"]) == {"click"}
    assert p["i2_10"]["click"] > max(p["i0_10"]["click"], p["i3_10"]["click"]) + 0.1
    # the same request with the history in the body answers the same
    history = [{"item_id": e["item_id"], "event_type": e["event_type"],
                "timestamp": e["timestamp"] * 1000} for e in events]  # fmt: skip
    explicit = client.post("/predict", json={**body, "history": history}).json()
    for x in explicit["predictions"]:
        assert x["probabilities"]["click"] == pytest.approx(p[x["item_id"]]["click"])
    new = client.post("/predict", json={"user_id": "new-user", "item_ids": items}).json()
    assert [x["item_id"] for x in new["predictions"]] == items


def test_predict_errors_are_clear(client: TestClient, tmp_path: Path, artifact: Path) -> None:
    bad = client.post(
        "/predict", json={"user_id": "u", "item_ids": ["i0_1"], "behaviours": ["buy"]}
    )
    assert bad.status_code == 400 and "predicts ['click']" in bad.json()["message"]
    assert client.post("/predict", json={"user_id": "u", "item_ids": []}).status_code == 422
    assert client.post("/predict", json={"item_ids": ["i0_1"]}).status_code == 422
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'n.db'}", read_requires_key=True)
    with TestClient(create_app(settings)) as plain:
        no_key = plain.post("/predict", json={"user_id": "u", "item_ids": ["i0_1"]})
        assert no_key.status_code == 401
        none = plain.post(
            "/predict", json={"user_id": "u", "item_ids": ["i0_1"]}, headers={"X-API-Key": READ_KEY}
        )
        assert none.status_code == 404
        assert "no behaviour model is loaded" in none.json()["message"]


def test_behaviour_artifact_setting_and_reload(
    tmp_path: Path, artifact: Path, behaviour_dir: Path
) -> None:
    settings = make_settings(
        artifact, f"sqlite:///{tmp_path / 's.db'}", behaviour_artifact=behaviour_dir
    )
    with TestClient(create_app(settings)) as client:
        r = client.post("/predict", json={"history": ["i0_1"], "item_ids": ["i0_2"]})
        assert r.status_code == 200 and r.json()["user_id"] is None
        service = client.app.state.service  # type: ignore[attr-defined]
        before = service.behaviour.current.version
        service.reload()
        assert service.behaviour.current.version == before
        loaded = BehaviourModel.load(behaviour_dir)
        assert loaded.behaviours == ["click"]
