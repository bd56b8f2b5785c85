"""Batching and the trainer: schedule, weight-decay groups, determinism, early stopping,
time budget, JSONL log, checkpoints and resume."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recpilot.config import TrainerConfig
from recpilot.training.batching import SequenceBatcher, pack_right
from recpilot.training.trainer import (
    Trainer,
    WarmupCosine,
    parameter_groups,
)
from tests.models.contract import interactions


# -- batching -------------------------------------------------------------------------------------
def sequences_data():
    """User 0: items 0..9; user 1: 5, 6; user 2: one event (no target); user 3: 1..4."""
    users = [0] * 10 + [1, 1] + [2] + [3] * 4
    items = [*range(10), 5, 6, 7, 1, 2, 3, 4]
    return interactions(users, items, n_items=12)


def test_batch_holds_every_position_with_next_item_targets() -> None:
    data = sequences_data()
    batcher = SequenceBatcher(data, max_len=4, batch_size=8, length_bucketing=1)
    assert batcher.n_sequences == 3  # user 2 has no target
    assert batcher.n_targets == 4 + 1 + 3
    batch = batcher.batch(np.arange(3))
    # user 0: the last max_len + 1 = 5 events 5..9; inputs 5..8 (tokens +1), targets 6..9
    assert batch.tokens.tolist() == [[6, 7, 8, 9], [6, 0, 0, 0], [2, 3, 4, 0]]
    assert batch.targets.tolist() == [[6, 7, 8, 9], [6, -1, -1, -1], [2, 3, 4, -1]]
    assert batch.lengths.tolist() == [4, 1, 3]
    assert len(batch) == 3 and batch.n_targets == 8


def test_epochs_cover_every_user_once_in_seeded_order() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 600)
    data = interactions(users, rng.integers(0, 30, 600))
    batcher = SequenceBatcher(data, max_len=20, batch_size=7, length_bucketing=3)
    order = batcher.order(np.random.default_rng(1))
    rows = np.concatenate(order)
    assert sorted(rows.tolist()) == list(range(batcher.n_sequences))
    assert len(order) == batcher.n_batches
    again = batcher.order(np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(order, again, strict=True))
    other = np.concatenate(batcher.order(np.random.default_rng(2)))
    assert not (other == rows).all()


def test_length_bucketing_reduces_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 60, 200)
    users = np.repeat(np.arange(200), lengths)
    data = interactions(users, rng.integers(0, 40, len(users)))

    def padded_slots(bucketing: int) -> int:
        batcher = SequenceBatcher(data, 50, 16, bucketing)
        return sum(b.tokens.numel() for b in batcher.epoch(np.random.default_rng(0)))

    assert padded_slots(8) < 0.8 * padded_slots(1)


def test_pack_right_keeps_the_most_recent_items() -> None:
    tokens, lengths = pack_right([np.array([1, 2, 3, 4, 5]), np.array([7])], max_len=3)
    assert tokens.tolist() == [[4, 5, 6], [8, 0, 0]]  # item i is token i + 1
    assert lengths.tolist() == [3, 1]


# -- schedule and optimiser -----------------------------------------------------------------------
def test_warmup_cosine() -> None:
    s = WarmupCosine(peak=1.0, floor=0.1, warmup_steps=4, total_steps=104)
    assert s(0) == pytest.approx(0.25) and s(3) == pytest.approx(1.0)
    assert s(4) == pytest.approx(1.0)
    assert s(54) == pytest.approx(0.55)  # half-way through the decay
    assert s(104) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    assert s(10, time_fraction=1.0) == pytest.approx(0.1)  # the time budget is spent
    assert s(10, time_fraction=0.5) == pytest.approx(0.55)


def test_weight_decay_on_matrices_only() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, rest = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(4, 4)]
    assert len(rest["params"]) == 4  # embedding, linear bias, LayerNorm weight and bias
    decay, _ = parameter_groups(model, 0.1, decay_embeddings=True)
    assert [tuple(p.shape) for p in decay["params"]] == [(5, 4), (4, 4)]


# -- a tiny regression task for the trainer --------------------------------------------------------
class Batch:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)


class Regression:
    """``y = x @ w`` plus noise, 64 rows in batches of 8."""

    n_batches = 8
    n_sequences = 64

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(64, generator=g)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        perm = torch.from_numpy(rng.permutation(64))
        for i in range(0, 64, 8):
            rows = perm[i : i + 8]
            yield Batch(self.x[rows], self.y[rows])


def make_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))


def mse(module: nn.Module):  # type: ignore[no-untyped-def]
    return lambda b: ((module(b.x).squeeze(-1) - b.y) ** 2).mean()


def config(**changes: object) -> TrainerConfig:
    base = {"max_epochs": 6, "learning_rate": 0.05, "warmup_epochs": 0.5, "show_progress": False}
    return TrainerConfig.model_validate({**base, **changes})


def weights(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_training_reduces_the_loss_and_is_deterministic() -> None:
    a = make_module()
    result = Trainer(config(), a, seed=3).fit(Regression(), mse(a))
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.stopped == "max_epochs" and result.epochs == 6 and result.steps == 48
    b = make_module()
    Trainer(config(), b, seed=3).fit(Regression(), mse(b))
    assert all(torch.equal(p, q) for p, q in zip(weights(a), weights(b), strict=True))
    c = make_module()
    Trainer(config(), c, seed=4).fit(Regression(), mse(c))
    assert not all(torch.equal(p, q) for p, q in zip(weights(a), weights(c), strict=True))


def test_global_random_state_is_left_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    m = make_module()
    torch.manual_seed(123)
    Trainer(config(max_epochs=1), m).fit(Regression(), mse(m))
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping_restores_the_best_state(tmp_path: Path) -> None:
    module = make_module()
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    snapshots: list[list[torch.Tensor]] = []

    def validate() -> dict[str, float]:
        assert not module.training  # validation runs in eval mode
        snapshots.append(weights(module))
        return {"NDCG@10": next(scores), "HR@10": 0.0}

    log = tmp_path / "log.jsonl"
    result = Trainer(config(patience=3, log_path=log), module).fit(
        Regression(), mse(module), validate
    )
    assert result.stopped == "early_stopping"
    assert result.epochs == 5 and result.best_epoch == 2 and result.best_metric == 0.5
    assert all(torch.equal(p, q) for p, q in zip(weights(module), snapshots[1], strict=True))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    assert [r["improved"] for r in lines] == [True, True, False, False, False]
    assert {"loss", "lr", "train_seconds", "sequences_per_second", "validation"} <= set(lines[0])


def test_validate_every_and_monitor_must_exist() -> None:
    module = make_module()
    calls: list[int] = []

    def validate() -> dict[str, float]:
        calls.append(1)
        return {"NDCG@10": float(len(calls))}

    result = Trainer(config(validate_every=4), module).fit(Regression(), mse(module), validate)
    assert len(calls) == 2  # epoch 4 and the last epoch (6)
    assert result.best_epoch == 6
    with pytest.raises(KeyError, match="monitored"):
        Trainer(config(monitor="MRR"), module).fit(Regression(), mse(module), lambda: {"X": 1.0})


def test_time_budget_stops_mid_epoch() -> None:
    module = make_module()
    result = Trainer(config(max_minutes=1e-9, max_epochs=50), module).fit(
        Regression(), mse(module), lambda: {"NDCG@10": 0.0}
    )
    assert result.stopped == "time_budget" and result.epochs == 1 and result.steps == 1
    assert result.history[0]["partial"] is True and "validation" in result.history[0]


def test_divergence_is_an_error() -> None:
    module = make_module()
    with pytest.raises(FloatingPointError, match="diverged"):
        Trainer(config(), module).fit(
            Regression(), lambda b: torch.tensor(math.nan) * module(b.x).sum()
        )


def test_bf16_autocast_trains() -> None:
    module = make_module()
    result = Trainer(config(precision="bf16"), module).fit(Regression(), mse(module))
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_resume_continues_where_an_interrupted_run_stopped(tmp_path: Path) -> None:
    scores = [0.1, 0.3, 0.2, 0.4, 0.35, 0.5]

    def validator(fail_at: int | None = None):  # type: ignore[no-untyped-def]
        calls = iter(range(1, 100))

        def validate() -> dict[str, float]:
            epoch = next(calls)
            if epoch == fail_at:
                raise KeyboardInterrupt
            return {"NDCG@10": scores[epoch - 1]}

        return validate

    whole = make_module()
    reference = Trainer(config(), whole, seed=5).fit(Regression(), mse(whole), validator())

    ckpt = tmp_path / "ckpt"
    first = make_module()
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(checkpoint_dir=ckpt), first, seed=5).fit(
            Regression(), mse(first), validator(fail_at=4)
        )
    assert (ckpt / "last" / "module.safetensors").is_file()
    assert json.loads((ckpt / "last" / "state.json").read_text())["epoch"] == 3
    assert not list(ckpt.rglob("*.pt")) and not list(ckpt.rglob("*.pkl"))

    second = make_module()
    calls = iter(range(4, 100))
    resumed = Trainer(config(checkpoint_dir=ckpt), second, seed=5).fit(
        Regression(), mse(second), lambda: {"NDCG@10": scores[next(calls) - 1]}
    )
    assert resumed.epochs == 6 and resumed.best_epoch == reference.best_epoch == 6
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(reference.history, resumed.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(weights(whole), weights(second), strict=True))


def test_progress_bar_shows_the_running_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bar on, the epoch's running loss and learning rate appear in its postfix."""
    import recpilot.training.trainer as trainer_module

    shown: list[str] = []
    real = trainer_module.progress_bar

    def spy(*args, **kwargs):
        bar = real(*args, **{**kwargs, "disable": False})
        original = bar.set_postfix_str

        def record(text: str, refresh: bool = True) -> None:
            shown.append(text)
            original(text, refresh)

        bar.set_postfix_str = record  # type: ignore[method-assign]
        return bar

    monkeypatch.setattr(trainer_module, "progress_bar", spy)
    torch.manual_seed(0)
    module = nn.Linear(4, 1)
    xs = torch.randn(64, 4)

    class Source:
        n_batches = 16
        n_sequences = 64

        def epoch(self, rng):
            for i in range(0, 64, 4):
                yield xs[i : i + 4]

    cfg = TrainerConfig(max_epochs=1, learning_rate=0.01, show_progress=True)
    Trainer(cfg, module).fit(Source(), lambda b: ((module(b) - b.sum(1, keepdim=True)) ** 2).mean())
    assert shown, "the bar never showed a loss"
    assert all(text.startswith("loss ") and ", lr " in text for text in shown)
    first = float(shown[0].split()[1].rstrip(","))
    assert first > 0
