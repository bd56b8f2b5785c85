"""Every behaviour model: probabilities in [0, 1], better than chance, save → load identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import save_file

from recpilot.behaviour.dataset import BehaviourDataset
from recpilot.behaviour.models import BehaviourModel, BSTBehaviourModel, behaviour_model
from recpilot.config import BSTBehaviourConfig, LightGBMBehaviourConfig, LogisticBehaviourConfig
from recpilot.errors import ArtifactError, ConfigError, NotFittedError
from recpilot.evaluation.metrics import roc_auc

CONFIGS = {
    "logistic": LogisticBehaviourConfig(),
    "lightgbm": LightGBMBehaviourConfig(n_estimators=60, threads=1),
    "bst": BSTBehaviourConfig(d_model=16, epochs=2, history_length=10, mlp=[32], batch_size=256),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def fitted(request: pytest.FixtureRequest, sim_dataset: BehaviourDataset) -> BehaviourModel:
    return behaviour_model(CONFIGS[request.param]).fit(sim_dataset)


def test_probabilities_are_valid_and_informative(
    fitted: BehaviourModel, sim_dataset: BehaviourDataset
) -> None:
    rows = sim_dataset.rows("test")
    probs = fitted.predict_dataset(sim_dataset, rows)
    assert list(probs) == ["click", "cart", "purchase"]
    for j, p in enumerate(probs.values()):
        assert p.shape == (len(rows),)
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        assert roc_auc(sim_dataset.labels[rows, j], p) > 0.6
    # calibrated on the validation period: its base rates come out right there
    valid = sim_dataset.rows("validation")
    on_valid = fitted.predict_dataset(sim_dataset, valid)
    for j, p in enumerate(on_valid.values()):
        assert abs(float(p.mean()) - float(sim_dataset.labels[valid, j].mean())) < 0.01


def test_save_then_load_gives_identical_predictions(
    fitted: BehaviourModel, sim_dataset: BehaviourDataset, tmp_path: Path
) -> None:
    rows = sim_dataset.rows("test")[:500]
    before = fitted.predict_dataset(sim_dataset, rows)
    fitted.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl"))
    loaded = BehaviourModel.load(tmp_path / "m")
    assert type(loaded) is type(fitted)
    after = loaded.predict_dataset(sim_dataset, rows)
    for b in before:
        np.testing.assert_allclose(after[b], before[b], rtol=0, atol=1e-6)
    # the serving path (history in the request, item statistics from the snapshot) agrees too
    ds = sim_dataset
    user = int(ds.user[rows[0]])
    start, end = ds.events.user_start[user], ds.events.user_start[user + 1]
    history = {
        "history_items": ds.items.lookup(ds.events.item[start:end]),
        "history_event_types": [ds.tokens[t] for t in ds.events.token[start:end]],
        "history_timestamps": ds.events.timestamp[start:end].tolist(),
    }
    items = [*ds.items.lookup(np.arange(10)), "no-such-item"]
    p1, known, unknown = fitted.predict_history(items, **history, timestamp=2_000_000_000_000)
    p2, _, _ = loaded.predict_history(items, **history, timestamp=2_000_000_000_000)
    assert unknown == ["no-such-item"] and len(known) == 10
    for b in p1:
        assert p1[b].shape == (10,)
        np.testing.assert_allclose(p1[b], p2[b], atol=1e-6)


def test_unfitted_and_missing_models_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        behaviour_model(LogisticBehaviourConfig()).behaviours  # noqa: B018
    with pytest.raises(ArtifactError, match=r"model\.json is missing"):
        BehaviourModel.load(tmp_path)


def _fake_sequential_artifact(path: Path, ids: list[object], d: int) -> np.ndarray:
    (path / "vocab").mkdir(parents=True)
    table = np.random.default_rng(0).standard_normal((len(ids) + 1, d)).astype(np.float32)
    save_file({"items.table.weight": table}, str(path / "weights.safetensors"))
    pl.DataFrame({"id": ids}).write_parquet(path / "vocab/items.parquet")
    return table


def test_warm_start_copies_item_vectors_by_id(
    sim_dataset: BehaviourDataset, tmp_path: Path
) -> None:
    ids = list(reversed(sim_dataset.items.lookup(np.arange(40))))  # another order, a subset
    table = _fake_sequential_artifact(tmp_path / "sasrec", ids, 16)
    cfg = BSTBehaviourConfig(d_model=16, epochs=1, history_length=5, mlp=[8], lr=1e-9)
    model = BSTBehaviourModel(cfg.model_copy(update={"item_init": tmp_path / "sasrec"}))
    model.fit(sim_dataset)
    assert model.warm_started_items_ == 40
    weight = model.module_.items.table.weight.detach().numpy()
    mine = sim_dataset.items.index(ids)
    np.testing.assert_allclose(weight[mine + 1], table[1:], atol=1e-5)

    wrong = BSTBehaviourModel(
        cfg.model_copy(update={"item_init": tmp_path / "sasrec", "d_model": 8})
    )
    with pytest.raises(ConfigError, match="set d_model to 16"):
        wrong.fit(sim_dataset)


def test_grid_selection_reads_validation_only(sim_dataset: BehaviourDataset) -> None:
    from recpilot.behaviour.task import select_on_validation

    grid = [LogisticBehaviourConfig(c=c) for c in (1e-4, 1.0)]
    model, tried = select_on_validation(sim_dataset, grid, "platt")
    losses = [t["validation_log_loss"] for t in tried]
    assert len(losses) == 2 and losses[0] != losses[1]
    assert model.config.c == grid[int(np.argmin(losses))].c
