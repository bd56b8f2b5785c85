"""The observable-history Bayes predictor (particle filter over the simulator's latent state)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recpilot.behaviour.dataset import build_dataset
from recpilot.behaviour.oracle import ParticleFilterConfig, observable_bayes_predictions
from recpilot.behaviour.task import BAYES, BAYES_OBSERVABLE, run_behaviour_task
from recpilot.config import BehaviourConfig, LogisticBehaviourConfig, SimulatorConfig
from recpilot.data.simulator import SimulatedData, Simulator, log_loss, roc_auc

OUTCOMES = {"p_click": "clicked", "p_cart": "carted", "p_purchase": "purchased"}


@pytest.fixture(scope="module")
def tiny() -> tuple[Simulator, SimulatedData]:
    sim = Simulator(SimulatorConfig(n_users=80, n_items=60, n_categories=4, seed=11))
    return sim, sim.generate()


@pytest.fixture(scope="module")
def filtered(tiny: tuple[Simulator, SimulatedData]) -> pl.DataFrame:
    sim, data = tiny
    return observable_bayes_predictions(sim, data.truth, ParticleFilterConfig(n_particles=300))


def test_simulator_building_blocks_reproduce_the_truth(
    tiny: tuple[Simulator, SimulatedData],
) -> None:
    # the public pieces the filter reuses give the truth's affinity and funnel of the users'
    # last sessions (the simulator keeps their current taste)
    sim, data = tiny
    last = data.truth.with_columns(
        pl.col("session_id").str.split("-").list.get(1).cast(pl.Int64).alias("_k")
    ).filter(pl.col("_k") == pl.col("_k").max().over("user_id"))
    users = last["user_id"].to_numpy() - 1
    items = last["item_id"].to_numpy() - 1
    taste = sim.taste_vectors(sim.category_logits_[users], sim.personal_vectors_[users])
    affinity = np.einsum("nd,nd->n", taste, sim.item_vectors_[items])
    np.testing.assert_allclose(affinity, last["affinity"].to_numpy(), atol=1e-10)
    sens = sim.segment_sensitivities()[sim.user_segment_[users]]
    p_click, p_cart, p_purchase = sim.funnel_probabilities(
        affinity, items, sens, last["successor"].to_numpy()
    )
    np.testing.assert_allclose(p_click, last["p_click"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(p_cart, last["p_cart_given_click"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(p_purchase, last["p_purchase_given_cart"].to_numpy(), atol=1e-12)


def test_predictions_are_probabilities_aligned_with_the_views(
    tiny: tuple[Simulator, SimulatedData], filtered: pl.DataFrame
) -> None:
    _, data = tiny
    keys = ["user_id", "item_id", "timestamp", "session_id"]
    assert_frame_equal(filtered.select(keys), data.truth.select(keys))
    p = filtered.select("p_click", "p_cart", "p_purchase").to_numpy()
    assert np.all((p > 0) & (p < 1))
    assert np.all(p[:, 1] <= p[:, 0]) and np.all(p[:, 2] <= p[:, 1])


def test_filtered_log_loss_lies_between_prior_and_clairvoyant(
    tiny: tuple[Simulator, SimulatedData], filtered: pl.DataFrame
) -> None:
    sim, data = tiny
    prior = observable_bayes_predictions(
        sim, data.truth, ParticleFilterConfig(n_particles=300, learn=False)
    )
    for p_col, y_col in OUTCOMES.items():
        y = data.truth[y_col].to_numpy()
        truth_loss = log_loss(y, data.truth[p_col].to_numpy())
        filter_loss = log_loss(y, filtered[p_col].to_numpy())
        prior_loss = log_loss(y, prior[p_col].to_numpy())
        assert truth_loss < filter_loss < prior_loss, (p_col, truth_loss, filter_loss, prior_loss)


def test_deterministic_with_a_seed(tiny: tuple[Simulator, SimulatedData]) -> None:
    sim, data = tiny
    users = [1, 2, 3]
    cfg = ParticleFilterConfig(n_particles=200, seed=5)
    a = observable_bayes_predictions(sim, data.truth, cfg, users=users)
    b = observable_bayes_predictions(sim, data.truth, cfg, users=users)
    assert_frame_equal(a, b)
    assert a["user_id"].unique().sort().to_list() == users
    other = observable_bayes_predictions(
        sim, data.truth, ParticleFilterConfig(n_particles=200, seed=6), users=users
    )
    diff = np.abs(a["p_click"].to_numpy() - other["p_click"].to_numpy())
    assert 0 < diff.max() < 0.1  # Monte-Carlo noise only


def test_long_stable_histories_approach_the_clairvoyant_auc() -> None:
    # no taste drift, many sessions: the history pins the latent taste down, so late views
    # are scored almost as well as with the true probabilities; early views are not
    sim = Simulator(
        SimulatorConfig(
            n_users=40,
            n_items=60,
            n_categories=4,
            sessions_per_user=12.0,
            session_length=8.0,
            taste_drift=0.0,
            seed=2,
        )
    )
    data = sim.generate()
    pred = observable_bayes_predictions(sim, data.truth, ParticleFilterConfig(n_particles=300))
    position = data.truth.select(pl.int_range(pl.len()).over("user_id").alias("k"))["k"]
    late = (position >= 40).to_numpy()
    early = (position < 5).to_numpy()
    y = data.truth["clicked"].to_numpy()
    truth_p, pf_p = data.truth["p_click"].to_numpy(), pred["p_click"].to_numpy()
    late_gap = roc_auc(y[late], truth_p[late]) - roc_auc(y[late], pf_p[late])
    early_gap = roc_auc(y[early], truth_p[early]) - roc_auc(y[early], pf_p[early])
    assert late.sum() > 1000
    assert late_gap < 0.015, late_gap
    assert late_gap < early_gap


def test_behaviour_task_reports_both_bayes_rows(tiny: tuple[Simulator, SimulatedData]) -> None:
    _, data = tiny
    dataset = build_dataset(data.log)
    test_users = np.unique(dataset.users.lookup(dataset.user[dataset.rows("test")]))
    sim = tiny[0]
    observable = observable_bayes_predictions(
        sim, data.truth, ParticleFilterConfig(n_particles=100), users=test_users
    )
    results = run_behaviour_task(
        dataset,
        BehaviourConfig(bootstrap=0),
        [LogisticBehaviourConfig()],
        oracle=data.truth,
        observable_oracle=observable,
    )
    for by_model in results["metrics"].values():
        assert {"logistic", BAYES, BAYES_OBSERVABLE} <= set(by_model)
        assert by_model[BAYES_OBSERVABLE]["log_loss"] >= by_model[BAYES]["log_loss"] - 0.05
