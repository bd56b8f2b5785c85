"""BERT4RecRecommender and HSTURecommender: the contract, learnability, timestamps, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from recpilot.config import BERT4RecConfig, EvaluationConfig, HSTUConfig
from recpilot.data.split import leave_one_out
from recpilot.errors import ArtifactError
from recpilot.evaluation import Evaluator
from recpilot.models.base import Query, Recommender
from recpilot.models.registry import model_from_config, model_names
from recpilot.models.sequential import BERT4RecRecommender, HSTURecommender, masked_item_loss
from recpilot.training.batching import SequenceBatcher, pack_times
from tests.models import test_sequential as seq
from tests.models.contract import (
    ITEMS_PER_BLOCK,
    USERS_PER_BLOCK,
    block_data,
    block_items,
    interactions,
)

CYCLE_TRAINING = {"max_epochs": 20, "batch_size": 16, "learning_rate": 1e-2, "weight_decay": 0}


def bert4rec(**changes: object) -> BERT4RecRecommender:
    return BERT4RecRecommender(BERT4RecConfig.model_validate({**seq.TINY, **changes}))


def hstu(**changes: object) -> HSTURecommender:
    return HSTURecommender(HSTUConfig.model_validate({**seq.TINY, **changes}))


class _SequenceContract(seq.TestSASRec):
    """SASRec's contract with its sequence-model overrides (next items follow the last event)."""

    def test_weights_do_not_fit_another_architecture(
        self, fitted: Recommender, tmp_path: Path
    ) -> None:
        path = fitted.save(tmp_path / "model")
        other = type(fitted)(fitted.config.model_copy(update={"d_model": 8}))
        other.items_ = fitted.items_
        from safetensors.numpy import load_file

        with pytest.raises(ArtifactError, match="architecture"):
            other._set_state(load_file(str(path / "weights.safetensors")))


class TestBERT4Rec(_SequenceContract):
    def make_model(self) -> Recommender:
        return bert4rec()

    def test_unseen_block_items_rank_first(self, fitted: Recommender) -> None:
        """Bidirectional: the [MASK] query pools the whole history, not only the last event.

        Users whose last event is in their own block get that block's unseen items first; for
        the noise users (last event in the next block, a situation no training sequence
        continues) the top item comes from a block in their history, never a third one.
        """
        data = block_data()
        for user in range(0, data.n_users, 5):
            history = data.history(user)
            last_block = int(history[-1]) // ITEMS_PER_BLOCK
            own_block = user // USERS_PER_BLOCK
            if last_block == own_block:
                expected = np.setdiff1d(block_items(own_block), history)
                ids, _ = fitted.recommend(Query.for_users(data, [user]), k=len(expected))
                assert set(ids[0].tolist()) == set(expected.tolist()), f"user {user}"
            else:
                ids, _ = fitted.recommend(Query.for_users(data, [user]), k=1)
                assert set((ids[0] // ITEMS_PER_BLOCK).tolist()) <= {own_block, last_block}


class TestHSTU(_SequenceContract):
    def make_model(self) -> Recommender:
        return hstu()

    def test_timestamps_reach_the_model_and_survive_save_load(
        self, fitted: Recommender, tmp_path: Path
    ) -> None:
        data = block_data()
        with_times = Query.for_users(data, [0, 13, 26])
        assert with_times.timestamps is not None
        without = Query(with_times.users, with_times.histories)
        # block_data's events are one time unit apart: the learned time bias is in use
        assert not np.allclose(fitted.score(with_times), fitted.score(without))
        loaded = Recommender.load(fitted.save(tmp_path / "model"))
        np.testing.assert_array_equal(loaded.score(with_times), fitted.score(with_times))
        np.testing.assert_array_equal(loaded.score(without), fitted.score(without))


@pytest.mark.parametrize("make", [bert4rec, hstu], ids=["bert4rec", "hstu"])
def test_learns_a_deterministic_cycle(make) -> None:  # type: ignore[no-untyped-def]
    data, _ = seq.cycle_data()
    split = leave_one_out(data)
    model = make(d_model=32, training=CYCLE_TRAINING).fit(split.train)
    result = Evaluator(EvaluationConfig(ks=[1, 10]), show_progress=False).evaluate(
        model, split.test
    )
    assert result.metrics["HR@10"] >= 0.95
    assert result.metrics["HR@1"] >= 0.5


def test_masked_loss_targets_only_masked_real_positions() -> None:
    data, _ = seq.cycle_data(n_users=20)
    batcher = SequenceBatcher(data, max_len=7, batch_size=20)
    batch = batcher.batch(np.arange(20))
    model = bert4rec(max_len=8)
    module = model._build_module(data.n_items)
    seen: dict[str, torch.Tensor] = {}

    def spy(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        seen["targets"] = targets
        return hidden.sum()

    torch.manual_seed(0)
    masked_item_loss(module, spy, batch, mask_prob=0.2)  # type: ignore[arg-type]
    targets = seen["targets"]
    assert len(targets) >= len(batch)  # at least one masked position per sequence
    assert ((targets >= 0) & (targets < data.n_items)).all()


def test_batches_carry_aligned_timestamps() -> None:
    data = interactions([0, 0, 0, 1, 1], [1, 2, 3, 2, 0])  # timestamps 0..4 in log order
    batch = SequenceBatcher(data, max_len=5, batch_size=2).batch(np.array([0, 1]))
    assert batch.timestamps is not None
    assert batch.timestamps.tolist() == [[0, 1], [3, 0]]
    assert pack_times([np.array([5, 6, 7]), np.array([9])], 2).tolist() == [[6, 7], [9, 0]]
    with pytest.raises(ValueError, match="timestamps"):
        Query(np.array([0]), (np.array([1, 2]),), (np.array([1]),))


def test_registry_and_config_union() -> None:
    for name, cls in (("bert4rec", BERT4RecRecommender), ("hstu", HSTURecommender)):
        model = model_from_config({"name": name, "d_model": 8, "n_heads": 2})
        assert type(model) is cls
        assert name in model_names(include_neural=True)
        assert name not in model_names()
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        BERT4RecConfig(max_len=1)


def test_cli_evaluates_hstu_on_a_tiny_csv(tmp_path: Path) -> None:
    from recpilot.cli import app

    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        start = int(rng.integers(0, 10))
        for t in range(6):
            rows.append((f"u{u}", f"i{(start + t) % 10}", 1_600_000_000 + 600 * t, "click"))
    csv = tmp_path / "events.csv"
    pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event_type"], orient="row"
    ).write_csv(csv)
    config = tmp_path / "hstu.toml"
    config.write_text(
        '[model]\nname = "hstu"\nd_model = 16\nmax_len = 8\n'
        "[model.training]\nmax_epochs = 3\nbatch_size = 16\n"
    )
    out = tmp_path / "out.json"
    args = ["evaluate", "--data", str(csv), "--format", "csv", "--model", "hstu"]
    result = CliRunner().invoke(app, [*args, "--config", str(config), "--output", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["model"] == "hstu"
    assert 0.0 <= payload["metrics"]["NDCG@10"] <= 1.0


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].glob("configs/**/*.yaml")), ids=lambda p: p.name
)
def test_frozen_configs_load_and_name_their_command(path: Path) -> None:
    from recpilot.config import load_config

    config = load_config(path)
    assert config.model.name in model_names(include_neural=True)
    if config.model.name in ("sasrec", "bert4rec", "hstu"):
        assert f"recpilot evaluate --config configs/{path.parent.name}/{path.name}" in (
            path.read_text()
        )


def test_evaluation_passes_history_times_to_the_model() -> None:
    from recpilot.data.split import temporal_split
    from recpilot.models.popularity import PopularityRecommender

    data, _ = seq.cycle_data(n_users=30)
    ptr = data.user_ptr
    for split in (leave_one_out(data), temporal_split(data)):
        for eval_set in (split.validation, split.test):
            assert eval_set.history_times is not None
            for user, hist, times in zip(
                eval_set.users, eval_set.histories, eval_set.history_times, strict=True
            ):
                np.testing.assert_array_equal(
                    times, data.timestamp[ptr[user] : ptr[user] + len(hist)]
                )

    seen: list[bool] = []

    class Spy(PopularityRecommender):
        def _score(self, query: Query) -> np.ndarray:
            seen.append(query.timestamps is not None)
            return super()._score(query)

    split = leave_one_out(data)
    Evaluator(EvaluationConfig(ks=[10]), show_progress=False).evaluate(
        Spy().fit(split.train), split.test
    )
    assert seen and all(seen)


def test_hstu_attention_matches_the_direct_formula() -> None:
    """``(SiLU(Q Kᵀ + bias) ⊙ causal / n) V`` with its gradients, also after a scoring pass."""
    import torch.nn.functional as F

    from recpilot.models.nn.hstu import hstu_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, 3, 7, 7, requires_grad=True)
    with torch.inference_mode():  # caches the mask while no gradient is tracked
        hstu_attention(q.detach(), k.detach(), v.detach(), bias.detach(), 50.0)
    out = hstu_attention(q, k, v, bias, 50.0)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    ref = (F.silu(q @ k.transpose(-1, -2) + bias).masked_fill(~causal, 0.0) / 50.0) @ v
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v, bias))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v, bias))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)
