"""Text-only kNN and hybrid (ID + text) sequence models on cold items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recpilot.config import SASRecConfig
from recpilot.content import HashingEncoder, catalogue_vectors
from recpilot.content.recommender import TextKNNRecommender
from recpilot.data.interactions import Interactions
from recpilot.errors import DataError
from recpilot.models.base import Query, Recommender
from recpilot.models.registry import model_from_config
from recpilot.models.sequential import SASRecRecommender
from tests.content.conftest import cold_items, group_data, group_of

TINY = {
    "d_model": 16,
    "n_layers": 1,
    "max_len": 12,
    "dropout": 0.1,
    "seed": 3,
    "training": {"max_epochs": 25, "batch_size": 16, "learning_rate": 5e-3, "weight_decay": 0.0},
}


def vectors(data: Interactions) -> np.ndarray:
    return catalogue_vectors(data, HashingEncoder(64))


def cold_hit_rate(model: Recommender, data: Interactions) -> float:
    """Share of users whose best cold item is of their own group."""
    cold = cold_items()
    hits = []
    for u in range(0, data.n_users, 3):
        ids, _ = model.recommend(Query.for_users(data, [u]), k=1, candidates=cold)
        hits.append(group_of(int(ids[0, 0])) == u % 4)
    return float(np.mean(hits))


def test_textknn_ranks_cold_items_of_the_history_topic(groups: Interactions) -> None:
    model = TextKNNRecommender().set_text_vectors(vectors(groups)).fit(groups)
    assert cold_hit_rate(model, groups) == 1.0


def test_textknn_needs_vectors_of_the_right_shape(groups: Interactions) -> None:
    with pytest.raises(DataError, match="set_text_vectors"):
        TextKNNRecommender().fit(groups)
    with pytest.raises(DataError, match="one row per item"):
        TextKNNRecommender().set_text_vectors(np.zeros((3, 8))).fit(groups)


def test_textknn_new_item_and_roundtrip(groups: Interactions, tmp_path: Path) -> None:
    enc = HashingEncoder(64)
    model = TextKNNRecommender().set_text_vectors(vectors(groups)).fit(groups)
    idx = model.add_items([1000], enc.encode(["cooking kitchen recipe pasta"]))
    assert idx.tolist() == [groups.n_items]
    cooking_user = 1  # group 1
    ids, _ = model.recommend(Query.for_users(groups, [cooking_user]), k=20)
    assert groups.n_items in ids[0].tolist()
    # a history holding only the new item is served from its text
    ids, _ = model.recommend(Query.from_histories([[groups.n_items]]), k=5)
    assert all(group_of(int(i)) == 1 for i in ids[0])
    loaded = Recommender.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(
        loaded.score(Query.from_histories([[0, 1]])), model.score(Query.from_histories([[0, 1]]))
    )


@pytest.fixture(scope="module")
def hybrid(groups: Interactions) -> SASRecRecommender:
    config = SASRecConfig.model_validate({**TINY, "text_features": True, "id_dropout": 0.5})
    model = SASRecRecommender(config).set_text_vectors(vectors(groups))
    return model.fit(groups)


def test_hybrid_recommends_cold_items_from_text(
    hybrid: SASRecRecommender, groups: Interactions
) -> None:
    assert cold_hit_rate(hybrid, groups) >= 0.9
    id_only = SASRecRecommender(SASRecConfig.model_validate(TINY)).fit(groups)
    assert cold_hit_rate(id_only, groups) < cold_hit_rate(hybrid, groups)


def test_hybrid_without_vectors_is_an_error(groups: Interactions) -> None:
    config = SASRecConfig.model_validate({**TINY, "text_features": True})
    with pytest.raises(DataError, match="set_text_vectors"):
        SASRecRecommender(config).fit(groups)


def test_hybrid_add_items_save_load(
    hybrid: SASRecRecommender, groups: Interactions, tmp_path: Path
) -> None:
    model = SASRecRecommender(hybrid.config).set_text_vectors(vectors(groups)).fit(groups)
    enc = HashingEncoder(64)
    new = model.add_items(
        [5000, 5001], enc.encode(["space rocket astronaut moon", "jungle animal safari lion"])
    )
    assert new.tolist() == [groups.n_items, groups.n_items + 1]
    space_user = 0  # group 0
    ids, _ = model.recommend(
        Query.for_users(groups, [space_user]), k=1, candidates=np.r_[cold_items(), new]
    )
    assert group_of(int(ids[0, 0])) == 0 or int(ids[0, 0]) == new[0]
    # the new item can be in a history
    scores = model.score(Query.from_histories([[int(new[1])]]))
    assert scores.shape == (1, groups.n_items + 2) and np.isfinite(scores).all()
    loaded = Recommender.load(model.save(tmp_path / "hybrid"))
    q = Query.from_histories([[0, int(new[0])], [int(new[1])]])
    np.testing.assert_allclose(loaded.score(q), model.score(q), rtol=1e-5, atol=1e-5)


def test_id_only_model_cannot_add_items(groups: Interactions) -> None:
    model = SASRecRecommender(
        SASRecConfig.model_validate({**TINY, "training": {**TINY["training"], "max_epochs": 1}})
    ).fit(groups)  # type: ignore[dict-item]
    with pytest.raises(DataError, match="text_features"):
        model.add_items([9999], np.zeros((1, 64)))


def test_init_from_carries_everything_but_the_item_table(
    hybrid: SASRecRecommender, groups: Interactions
) -> None:
    """Transfer: a second catalogue starts from the first model's blocks and text projection."""
    other = group_data(n_users=40, seed=5)
    fresh = SASRecRecommender(hybrid.config).set_text_vectors(vectors(other)).init_from(hybrid)
    module = fresh._build_module(other.n_items, other)
    assert hybrid.module_ is not None
    source = hybrid.module_.state_dict()
    for name, value in module.state_dict().items():
        if name in ("items.table.weight", "items.text", "items.has_id"):
            continue
        torch.testing.assert_close(value, source[name], msg=name)
    wider = SASRecConfig.model_validate({**TINY, "d_model": 32, "text_features": True})
    widened = SASRecRecommender(wider).set_text_vectors(vectors(other)).init_from(hybrid)
    with pytest.raises(DataError, match="same d_model"):
        widened._build_module(other.n_items, other)
    with pytest.raises(DataError, match="fitted"):
        SASRecRecommender(hybrid.config).init_from(SASRecRecommender(hybrid.config))


@pytest.mark.parametrize("name", ["hstu", "bert4rec"])
def test_hstu_and_bert4rec_read_text_too(name: str, groups: Interactions) -> None:
    config = {**TINY, "name": name, "text_features": True}
    config["training"] = {**TINY["training"], "max_epochs": 2}  # type: ignore[dict-item]
    model = model_from_config(config)
    assert isinstance(model, SASRecRecommender)
    model.set_text_vectors(vectors(groups)).fit(groups)
    enc = HashingEncoder(64)
    if name == "hstu":
        assert model.text_dim == 64
        with pytest.raises(DataError, match="do not fit"):
            model.add_items(["not-an-int"], enc.encode(["castle"]))
        idx = model.add_items([9000], enc.encode(["castle knight sword"]))
        assert np.isfinite(model.score(Query.from_histories([[int(idx[0])]]))).all()
    else:  # the [MASK] token sits right after the catalogue: it cannot grow
        assert model.text_dim is None
        with pytest.raises(DataError, match="BERT4Rec"):
            model.add_items([9000], enc.encode(["castle knight sword"]))
