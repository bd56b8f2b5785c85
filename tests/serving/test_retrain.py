"""`recpilot retrain`: train on the store's events, promote only if not worse, log why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recpilot.cli import app as cli
from recpilot.errors import DataError
from recpilot.models.base import Recommender
from recpilot.serving.registry import ModelRegistry
from recpilot.serving.retrain import RETRAIN_LOG, retrain
from recpilot.serving.store import EventRecord, Store

from .conftest import block_events


@pytest.fixture
def filled_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    store.add_events(
        [
            EventRecord(f"e{n}", row["user_id"], row["item_id"], "view", row["timestamp"])
            for n, row in enumerate(block_events().iter_rows(named=True))
        ]
    )
    yield store
    store.close()


def test_a_worse_candidate_is_published_but_not_promoted(
    filled_store: Store, registry_copy: Path
) -> None:
    registry = ModelRegistry(registry_copy)
    filled_store.erase_user("u0_0")
    decision = retrain(filled_store, registry, model={"name": "popularity"}, metric="HR@5")
    assert not decision.promoted and decision.serving_version == "v0001"
    assert decision.serving_value is not None and decision.candidate_value < decision.serving_value
    assert registry.current_version() == "v0001"
    assert decision.candidate_version in registry.versions()
    candidate = Recommender.load(registry.path(decision.candidate_version))
    assert candidate.name == "popularity"
    assert candidate.users_ is not None and "u0_0" not in candidate.users_  # erased: unseen
    logged = [json.loads(line) for line in (registry_copy / RETRAIN_LOG).read_text().splitlines()]
    assert logged[-1]["promoted"] is False and logged[-1]["metric"] == "HR@5"


def test_a_candidate_within_tolerance_is_promoted(filled_store: Store, registry_copy: Path) -> None:
    registry = ModelRegistry(registry_copy)
    decision = retrain(filled_store, registry, tolerance=1.0)
    assert decision.promoted and registry.current_version() == decision.candidate_version
    assert Recommender.load(registry.path(decision.candidate_version)).name == "itemknn"


def test_an_empty_registry_takes_the_candidate(filled_store: Store, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "empty-registry")
    decision = retrain(filled_store, registry, model={"name": "itemknn", "neighbours": 5})
    assert decision.promoted and decision.reason == "no serving model"
    assert registry.current_version() == "v0001"


def test_retrain_refuses_an_empty_store(tmp_path: Path, registry_copy: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    store.migrate()
    with pytest.raises(DataError, match="no events"):
        retrain(store, ModelRegistry(registry_copy))
    store.close()


def test_cli_retrain(filled_store: Store, registry_copy: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "retrain",
            "--registry",
            str(registry_copy),
            "--db",
            filled_store.url,
            "--model",
            "popularity",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "not promoted" in result.output
