"""Fixtures of the serving tests: a small trained model, a registry, stores on both back ends.

The model is item-kNN on block data with string ids: users of block ``b`` view items
``i{b}_0 .. i{b}_7``, so one viewed item makes its block's items the top recommendations.
PostgreSQL tests use the local server (``RECPILOT_TEST_PG`` overrides the DSN) and skip with
the reason when it cannot be reached; each test gets its own table prefix and drops its tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recpilot.config import ApiKeyConfig, ServiceSettings
from recpilot.data.interactions import Interactions
from recpilot.models.registry import model_from_config
from recpilot.serving.registry import ModelHolder, ModelRegistry
from recpilot.serving.service import RecService
from recpilot.serving.store import Store

N_BLOCKS = 4
ITEMS_PER_BLOCK = 8
USERS_PER_BLOCK = 10
PG_DSN = os.environ.get("RECPILOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WRITE_KEY = "write-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
READ_KEY = "read-key-012345678901"


def item(block: int, j: int) -> str:
    return f"i{block}_{j}"


def block_events() -> pl.DataFrame:
    """Each user views 5 random items of their block, one minute apart."""
    rng = np.random.default_rng(0)
    rows = []
    for b in range(N_BLOCKS):
        for u in range(USERS_PER_BLOCK):
            for t, j in enumerate(rng.choice(ITEMS_PER_BLOCK, 5, replace=False)):
                rows.append((f"u{b}_{u}", item(b, int(j)), 1_700_000_000_000 + 60_000 * t, "view"))
    return pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event_type"], orient="row"
    )


@pytest.fixture(scope="session")
def train_data() -> Interactions:
    return Interactions.from_frame(block_events())


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory: pytest.TempPathFactory, train_data: Interactions) -> Path:
    """A registry with two versions (v0001 current): item-kNN with 7 and with 3 neighbours."""
    root = tmp_path_factory.mktemp("registry")
    build = tmp_path_factory.mktemp("build")
    registry = ModelRegistry(root)
    for n, neighbours in enumerate((7, 3)):
        model = model_from_config({"name": "itemknn", "neighbours": neighbours})
        model.fit(train_data)
        artefact = model.save(build / f"model{n}")
        registry.publish(artefact, make_current=n == 0)
    return root


@pytest.fixture(scope="session")
def artifact(registry_root: Path) -> Path:
    """One plain artefact directory (the registry's first version)."""
    return ModelRegistry(registry_root).path("v0001")


@pytest.fixture
def registry_copy(tmp_path: Path, registry_root: Path) -> Path:
    """A registry this test may change (its ``current`` pointer)."""
    import shutil

    dest = tmp_path / "registry"
    shutil.copytree(registry_root, dest)
    return dest


def pg_store() -> Store:
    """A store on the local PostgreSQL with a fresh table prefix, or a skip."""
    store = Store(PG_DSN, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    if not store.ping():
        store.close()
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN} (set RECPILOT_TEST_PG to a DSN)")
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on each back end; dropped afterwards."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}") if request.param == "sqlite" else pg_store()
    store.migrate()
    try:
        yield store
    finally:
        store.drop()
        store.close()


def make_settings(artifact: Path, db: str, **options: object) -> ServiceSettings:
    keys = [
        ApiKeyConfig(key=WRITE_KEY, scopes=["read", "write"], name="writer"),
        ApiKeyConfig(key=ADMIN_KEY, name="admin"),
        ApiKeyConfig(key=READ_KEY, scopes=["read"], name="reader"),
    ]
    return ServiceSettings.model_validate(
        {"artifact": artifact, "db": db, "api_keys": keys, "new_item_slots": 0, **options}
    )


@pytest.fixture
def service(tmp_path: Path, artifact: Path) -> Iterator[RecService]:
    """A started service on SQLite serving the plain artefact."""
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'svc.db'}")
    svc = RecService.open(settings)
    try:
        yield svc
    finally:
        svc.close()


def open_service(settings: ServiceSettings, store: Store | None = None) -> RecService:
    """A started service (on ``store`` when given)."""
    if store is None:
        return RecService.open(settings)
    svc = RecService(store, ModelHolder(settings.artifact), settings)
    svc.start()
    return svc
