"""SASRecRecommender: the contract, learnability on synthetic sequences, pipeline routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recpilot.config import EvaluationConfig, SASRecConfig
from recpilot.data.split import leave_one_out
from recpilot.errors import ArtifactError
from recpilot.evaluation import Evaluator
from recpilot.models.base import Query, Recommender
from recpilot.models.popularity import PopularityRecommender
from recpilot.models.registry import model_from_config, model_names
from recpilot.models.sequential import SASRecRecommender, log_prior
from tests.models.contract import (
    ITEMS_PER_BLOCK,
    USERS_PER_BLOCK,
    RecommenderContract,
    block_data,
    block_items,
    interactions,
)

TINY = {
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 1,
    "max_len": 16,
    "dropout": 0.1,
    "training": {
        "max_epochs": 30,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
    },
}


def tiny(**changes: object) -> SASRecRecommender:
    return SASRecRecommender(SASRecConfig.model_validate({**TINY, **changes}))


def cycle_data(n_users: int = 120, n_items: int = 40, seed: int = 0):
    """Every user walks one fixed cycle over the items: the next item is ``succ[current]``.

    Users start anywhere on the cycle and make 6 to 20 steps, so the next item is always
    determined by the current one while item popularity is nearly flat.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_items)
    succ = np.empty(n_items, dtype=np.int64)
    succ[order] = np.roll(order, -1)
    users: list[int] = []
    items: list[int] = []
    for u in range(n_users):
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(6, 21))):
            users.append(u)
            items.append(item)
            item = int(succ[item])
    return interactions(users, items, n_items=n_items), succ


class TestSASRec(RecommenderContract):
    def make_model(self) -> Recommender:
        return tiny()

    def test_unseen_block_items_rank_first(self, fitted: Recommender) -> None:
        """Sequence semantics: the next items follow the user's most recent event.

        Every fourth user of `block_data` ends with one item of the next block (noise). A
        sequence model predicts from the most recent event, so for those users the next
        block's items come first; for every other user, their own block's unseen items do.
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
                ids, _ = fitted.recommend(Query.for_users(data, [user]), k=3)
                assert (ids[0] // ITEMS_PER_BLOCK == last_block).all(), f"user {user}"

    def test_empty_history_scores_are_the_popularity_prior(self, fitted: Recommender) -> None:
        assert isinstance(fitted, SASRecRecommender)
        scores = fitted.score(Query.from_histories([[]]))
        np.testing.assert_array_equal(scores[0], log_prior(block_data()))
        counts = block_data().item_counts()
        top = np.argsort(-scores[0], kind="stable")[:5]
        assert (counts[top] == np.sort(counts)[::-1][:5]).all()

    def test_long_history_uses_the_last_max_len_items(self, fitted: Recommender) -> None:
        assert isinstance(fitted, SASRecRecommender)
        recent = block_items(2)[:5]
        old = np.tile(block_items(0), 10)  # older than max_len events back
        long = np.concatenate([old, recent])[-fitted.config.max_len :]
        with_old = fitted.score(Query.from_histories([np.concatenate([old, long])]))
        np.testing.assert_allclose(
            with_old, fitted.score(Query.from_histories([long])), rtol=1e-5, atol=1e-6
        )

    def test_scores_do_not_depend_on_the_batch(self, fitted: Recommender) -> None:
        histories = [block_items(1)[:3], block_items(0), block_items(3)[2:7], [5]]
        together = fitted.score(Query.from_histories(histories))
        for row, history in enumerate(histories):
            alone = fitted.score(Query.from_histories([history]))
            np.testing.assert_allclose(alone[0], together[row], rtol=1e-5, atol=1e-5)

    def test_weights_do_not_fit_another_architecture(
        self, fitted: Recommender, tmp_path: Path
    ) -> None:
        path = fitted.save(tmp_path / "model")
        other = SASRecRecommender(fitted.config.model_copy(update={"d_model": 8}))
        other.items_ = fitted.items_
        from safetensors.numpy import load_file

        with pytest.raises(ArtifactError, match="architecture"):
            other._set_state(load_file(str(path / "weights.safetensors")))


def test_learns_a_deterministic_cycle() -> None:
    """Next item determined by the current one: HR@10 on held-out last items near 1."""
    data, _ = cycle_data()
    split = leave_one_out(data)
    model = tiny(
        d_model=32,
        training={
            "max_epochs": 40,
            "batch_size": 16,
            "learning_rate": 1e-2,
            "weight_decay": 0.0,
            "patience": 40,
        },
    ).fit(split.train, split.validation)
    evaluator = Evaluator(EvaluationConfig(ks=[1, 10]), show_progress=False)
    result = evaluator.evaluate(model, split.test)
    popular = evaluator.evaluate(PopularityRecommender().fit(split.train_validation), split.test)
    assert result.metrics["HR@10"] >= 0.95
    assert result.metrics["HR@1"] >= 0.8  # it fits the cycle, not just the neighbourhood
    assert popular.metrics["HR@10"] < 0.5
    assert isinstance(model, SASRecRecommender) and model.training_ is not None
    assert model.training_.best_epoch is not None


@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_sampled_losses_learn_the_cycle(loss: str) -> None:
    data, _ = cycle_data()
    split = leave_one_out(data)
    model = tiny(
        d_model=32,
        loss=loss,
        n_negatives=16,
        training={"max_epochs": 40, "batch_size": 16, "learning_rate": 1e-2, "weight_decay": 0},
    ).fit(split.train)
    result = Evaluator(EvaluationConfig(ks=[10]), show_progress=False).evaluate(model, split.test)
    assert result.metrics["HR@10"] >= 0.9


def test_early_stopping_restores_the_best_epoch() -> None:
    data, _ = cycle_data(n_users=60)
    split = leave_one_out(data)
    model = tiny(
        training={"max_epochs": 12, "batch_size": 16, "learning_rate": 1e-2, "patience": 2}
    ).fit(split.train, split.validation)
    assert isinstance(model, SASRecRecommender) and model.training_ is not None
    history = model.training_.history
    assert all("validation" in r for r in history)
    best = max(history, key=lambda r: r["validation"]["NDCG@10"])
    assert model.training_.best_epoch == best["epoch"]
    again = Evaluator(EvaluationConfig(ks=[10]), show_progress=False).evaluate(
        model, split.validation
    )
    assert again.metrics["NDCG@10"] == pytest.approx(best["validation"]["NDCG@10"], abs=1e-6)


def test_unknown_items_and_long_histories_are_served() -> None:
    data, _ = cycle_data(n_users=30)
    model = tiny().fit(data)
    query = Query.from_histories([np.arange(40).repeat(3), [-1, 3, 99], []])
    scores = model.score(query)
    assert scores.shape == (3, 40) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[1], model.score(Query.from_histories([[3]]))[0], atol=1e-6)


def test_registry_and_config_union() -> None:
    model = model_from_config({"name": "sasrec", "d_model": 8, "n_heads": 2})
    assert isinstance(model, SASRecRecommender) and model.config.d_model == 8
    assert "sasrec" in model_names(include_neural=True)
    assert "sasrec" not in model_names()  # `--model all` and the demo: baselines only
    with pytest.raises(ValueError, match="multiple of n_heads"):
        SASRecConfig(d_model=10, n_heads=3)


def test_pipeline_fits_once_on_train_with_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    from recpilot.config import ExperimentConfig, SplitConfig
    from recpilot.data.split import make_split
    from recpilot.pipeline import Prepared, fit_model

    data, _ = cycle_data(n_users=40)
    split = make_split(data, SplitConfig())
    prepared = Prepared(log=None, data=data, split=split, report=None, seconds=0.0)  # type: ignore[arg-type]
    seen: list[tuple[int, bool]] = []
    original = SASRecRecommender._fit

    def spy(self: SASRecRecommender, data, validation=None) -> None:  # type: ignore[no-untyped-def]
        seen.append((data.n_events, validation is not None))
        original(self, data, validation)

    monkeypatch.setattr(SASRecRecommender, "_fit", spy)
    cfg = ExperimentConfig.model_validate(
        {"model": {**TINY, "name": "sasrec", "training": {**TINY["training"], "max_epochs": 2}}}  # type: ignore[dict-item]
    )
    for fit_on in ("train", "train_validation"):
        fit_model(cfg, prepared, fit_on)  # type: ignore[arg-type]
    fit_model(cfg, prepared, "all")
    assert seen == [
        (split.train.n_events, True),
        (split.train.n_events, True),
        (data.n_events, False),
    ]


def test_head_precision_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    import recpilot.models.sequential as seq

    assert seq.head_bf16(SASRecConfig(head_precision="bf16")) is True
    assert seq.head_bf16(SASRecConfig(head_precision="fp32")) is None  # follows autocast
    monkeypatch.setattr(seq, "native_bf16", lambda: False)
    assert seq.head_bf16(SASRecConfig()) is None
    monkeypatch.setattr(seq, "native_bf16", lambda: True)
    assert seq.head_bf16(SASRecConfig()) is True
