"""The service passes the stored events' types to a sequence model trained with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from recpilot.config import SASRecConfig
from recpilot.data.interactions import Interactions
from recpilot.models.sequential import SASRecRecommender
from recpilot.serving.service import RecService
from recpilot.serving.store import EventRecord
from tests.serving.conftest import make_settings

N_ITEMS = 40


def typed_events() -> pl.DataFrame:
    """After a ``cart`` of item ``p{i}`` the next item is ``p{i+1}``, after a ``view`` ``p{i+2}``."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        item = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(6, 12))):
            kind = "cart" if rng.random() < 0.5 else "view"
            rows.append((f"u{u}", f"p{item}", 1_700_000_000_000 + 60_000 * t, kind))
            item = (item + (1 if kind == "cart" else 2)) % N_ITEMS
    return pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event_type"], orient="row"
    )


def test_recommendations_follow_the_last_event_type(tmp_path: Path) -> None:
    config = SASRecConfig.model_validate(
        {
            "d_model": 32,
            "n_layers": 1,
            "max_len": 16,
            "dropout": 0.1,
            "training": {"max_epochs": 40, "batch_size": 16, "learning_rate": 1e-2},
        }
    )
    model = SASRecRecommender(config).fit(Interactions.from_frame(typed_events()))
    assert model.event_types_ == ("cart", "view")
    artifact = model.save(tmp_path / "model")
    svc = RecService.open(make_settings(artifact, f"sqlite:///{tmp_path / 'svc.db'}"))
    try:
        ts = 1_800_000_000_000
        svc.ingest(
            [
                EventRecord("e1", "carter", "p10", "view", ts),
                EventRecord("e2", "carter", "p12", "cart", ts + 1000),
                EventRecord("e3", "viewer", "p10", "view", ts),
                EventRecord("e4", "viewer", "p12", "view", ts + 1000),
            ]
        )
        carter = svc.recommend_for_user("carter", k=1)
        viewer = svc.recommend_for_user("viewer", k=1)
        assert [i.item_id for i in carter.items] == ["p13"]
        assert [i.item_id for i in viewer.items] == ["p14"]
    finally:
        svc.close()
