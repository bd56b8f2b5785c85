"""The pipeline gives text-reading models their item vectors from the side table."""

from __future__ import annotations

import pytest

import recpilot.content as content
from recpilot.config import ExperimentConfig
from recpilot.content import HashingEncoder
from recpilot.content.recommender import TextKNNRecommender
from recpilot.data.schema import EventLog, canonical
from recpilot.models.base import Query
from recpilot.pipeline import fit_model, prepare
from tests.content.conftest import group_data, group_of, item_table


def test_fit_model_encodes_item_text_for_textknn(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pipeline uses the shipped MiniLM; a hashing encoder keeps this test instant
    monkeypatch.setattr(content, "MiniLMEncoder", lambda: HashingEncoder(64))
    events = canonical(group_data().to_frame())
    config = ExperimentConfig.model_validate({"model": {"name": "textknn"}})
    prepared = prepare(config, EventLog(events, items=item_table()))
    model = fit_model(config, prepared)
    assert isinstance(model, TextKNNRecommender) and model.text_dim == 64
    data = prepared.split.train
    ids, _ = model.recommend(Query.for_users(data, [0]), k=3)
    external = model.items_.lookup(ids[0]) if model.items_ is not None else []
    assert all(
        group_of(int(i)) == group_of(int(data.items.lookup([data.history(0)[0]])[0]))
        for i in external
    )
