"""Guidance policies in the service: policy=, stage reasons, propensities, hot reload."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, inspect, text

from recpilot.guide.policy import UnknownPolicyError
from recpilot.guide.stages import DIVERSIFY, EXPLORING, PROMOTED
from recpilot.serving.app import create_app
from recpilot.serving.service import RecService
from recpilot.serving.store import SCHEMA_VERSION, EventRecord, Impression, Store

from .conftest import READ_KEY, WRITE_KEY, item, make_settings

POLICIES = """
default: plain
policies:
  plain: {description: the model's order, stages: []}
  promote:
    stages: [{type: promote, items: ["i3_1", "i3_2"], max_share: 0.2, positions: [1]}]
  explore:
    stages: [{type: explore, share: 1.0, pool_size: 20}]
  diverse:
    stages: [{type: mmr, lambda: 0.0}]
  no-red:
    stages: [{type: filter_category, deny: [red]}]
"""


def _write(path: Path, text_: str, bump_ns: int = 0) -> None:
    path.write_text(text_)
    if bump_ns:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    _write(path, POLICIES)
    return path


@pytest.fixture
def guided(tmp_path: Path, artifact: Path, policy_file: Path) -> Iterator[RecService]:
    settings = make_settings(
        artifact,
        f"sqlite:///{tmp_path / 'guided.db'}",
        policies=policy_file,
        policies_check_seconds=0,
    )
    svc = RecService.open(settings)
    svc.ingest([EventRecord("e1", "ann", item(0, 0), "view", 1)])
    try:
        yield svc
    finally:
        svc.close()


def test_default_policy_applies_when_none_is_named(guided: RecService) -> None:
    recs = guided.recommend_for_user("ann", k=5)
    assert recs.policy == "plain"
    assert recs.items[0].reason == f"because you viewed {item(0, 0)}"
    assert all(i.propensity == 1.0 for i in recs.items)
    newcomer = guided.recommend_for_user("nobody", k=5, policy="promote")
    assert newcomer.policy is None  # popular fallback: nothing to re-rank


def test_promotion_names_the_stage_and_respects_its_slot(guided: RecService) -> None:
    recs = guided.recommend_for_user("ann", k=10, policy="promote")
    promoted = [n for n, i in enumerate(recs.items) if i.reason == PROMOTED]
    assert promoted == [1]
    assert recs.items[1].item_id in {item(3, 1), item(3, 2)}
    assert recs.items[1].because_item_id is None


def test_exploration_logs_propensities_with_the_impressions(guided: RecService) -> None:
    recs = guided.recommend_for_user("ann", k=6, policy="explore")
    assert all(i.reason == EXPLORING for i in recs.items)
    assert all(0 < i.propensity < 1 for i in recs.items)
    guided.impressions.flush()
    logged = guided.store.impressions("ann")
    assert [(i.item_id, i.position) for i in logged] == [
        (r.item_id, n) for n, r in enumerate(recs.items)
    ]
    assert [i.propensity for i in logged] == pytest.approx([r.propensity for r in recs.items])
    # the same request id reproduces the same list (seeded by it)
    assert item(0, 0) not in {i.item_id for i in recs.items}


def test_mmr_reaches_other_blocks_and_says_why(guided: RecService) -> None:
    plain = guided.recommend_for_user("ann", k=8)
    diverse = guided.recommend_for_user("ann", k=8, policy="diverse")
    assert {i.item_id for i in diverse.items} != {i.item_id for i in plain.items}
    assert DIVERSIFY in {i.reason for i in diverse.items}


def test_category_filter_policy_never_shows_denied_items(guided: RecService) -> None:
    guided.put_items([(item(0, j), True, {"category": "red"}) for j in range(1, 5)])
    recs = guided.recommend_for_user("ann", k=12, policy="no-red")
    assert not {i.item_id for i in recs.items} & {item(0, j) for j in range(1, 5)}
    assert len(recs.items) == 12


def test_unknown_policy_lists_the_known_ones(guided: RecService) -> None:
    with pytest.raises(
        UnknownPolicyError, match="known policies: diverse, explore, no-red, plain, promote"
    ):
        guided.recommend_for_user("ann", k=5, policy="nope")


def test_policy_file_is_hot_reloaded(guided: RecService, policy_file: Path) -> None:
    with pytest.raises(UnknownPolicyError):
        guided.recommend_for_user("ann", policy="fresh")
    _write(
        policy_file,
        POLICIES + "  fresh:\n    stages: [{type: mmr, lambda: 0.5}]\n",
        bump_ns=1_000_000,
    )
    assert guided.recommend_for_user("ann", k=5, policy="fresh").policy == "fresh"
    _write(policy_file, "policies: {broken", bump_ns=2_000_000)
    assert guided.recommend_for_user("ann", k=5, policy="fresh").policy == "fresh"  # kept
    assert guided.policies.last_error is not None


def test_http_policy_parameter_and_policy_list(
    tmp_path: Path, registry_copy: Path, policy_file: Path
) -> None:
    settings = make_settings(
        registry_copy, f"sqlite:///{tmp_path / 'app.db'}", policies=policy_file
    )
    with TestClient(create_app(settings)) as client:
        w = {"X-API-Key": WRITE_KEY}
        body = {
            "events": [
                {
                    "event_id": "x1",
                    "user_id": "bo",
                    "item_id": item(1, 0),
                    "timestamp": 1_700_000_000,
                }
            ]
        }
        assert client.post("/events", json=body, headers=w).status_code == 200
        r = client.get("/users/bo/recommendations", params={"k": 10, "policy": "promote"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["policy"] == "promote" and out["items"][1]["reason"] == PROMOTED
        assert all("propensity" in i for i in out["items"])
        r = client.post(
            "/recommendations", json={"history": [item(2, 0)], "k": 5, "policy": "explore"}
        )
        assert r.status_code == 200 and {i["reason"] for i in r.json()["items"]} == {EXPLORING}
        bad = client.get("/users/bo/recommendations", params={"policy": "nope"})
        assert bad.status_code == 400
        assert "known policies: diverse, explore, no-red, plain, promote" in bad.text
        listed = client.get("/policies", headers={"X-API-Key": READ_KEY}).json()
        assert listed["default"] == "plain"
        assert [p["name"] for p in listed["policies"]] == [
            "diverse",
            "explore",
            "no-red",
            "plain",
            "promote",
        ]


def test_impression_propensity_migration_upgrades_an_old_store(store: Store) -> None:
    """A store migrated before version 4 lacks the column; migrating adds it (both back ends)."""
    name = store.tables.impressions.name
    with store.engine.begin() as conn:
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.execute(text(f"ALTER TABLE {quoted} DROP COLUMN propensity"))
        conn.execute(
            delete(store.tables.schema_version).where(store.tables.schema_version.c.version == 4)
        )
    assert store.schema_version() == 3
    with store.engine.connect() as conn:
        assert "propensity" not in {c["name"] for c in inspect(conn).get_columns(name)}
    assert store.migrate() == SCHEMA_VERSION
    store.log_impressions(
        [
            Impression("r1", "u", "i", 0, "v1", "exploring something new", 5, 0.015),
            Impression("r1", "u", "j", 1, "v1", "because you viewed x", 5),
        ]
    )
    got = store.impressions("u")
    assert [i.propensity for i in got] == [pytest.approx(0.015), None]


def test_a_policy_can_travel_with_the_request(tmp_path: Path, registry_copy: Path) -> None:
    settings = make_settings(registry_copy, f"sqlite:///{tmp_path / 'app.db'}")  # no policy file
    inline = {
        "stages": [{"type": "promote", "items": ["i3_1"], "max_share": 0.2, "positions": [1]}]
    }
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/recommendations", json={"history": [item(2, 0)], "k": 5, "policy_config": inline}
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["policy"] == "inline" and out["items"][1]["item_id"] == item(3, 1)
        assert out["items"][1]["reason"] == PROMOTED
        both = client.post(
            "/recommendations",
            json={"history": [item(2, 0)], "policy": "x", "policy_config": inline},
        )
        assert both.status_code == 422 and "not both" in both.text
        bad = {"stages": [{"type": "mmr", "lambda": 3}]}
        r = client.post("/recommendations", json={"history": [item(2, 0)], "policy_config": bad})
        assert r.status_code == 422 and "lambda" in r.text
        unknown = {
            "stages": [{"type": "steer", "target": {"kind": "category", "categories": ["none"]}}]
        }
        r = client.post(
            "/recommendations", json={"history": [item(2, 0)], "policy_config": unknown}
        )
        assert r.status_code == 400 and "match no item" in r.text
