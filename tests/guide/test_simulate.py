"""The closed loop on the synthetic simulator and the off-policy check."""

from __future__ import annotations

import pytest

from recpilot.config import SimulatorConfig
from recpilot.guide.policy import PolicyConfig
from recpilot.guide.simulate import ClosedLoopConfig, off_policy_check, run_closed_loop

SIM = SimulatorConfig(n_users=200, n_items=150, n_categories=6, seed=1)
LOOP = ClosedLoopConfig(rounds=4, users_per_round=60, k=8, refit_every=2, window=2, seed=2)
TAIL = PolicyConfig.model_validate(
    {"stages": [{"type": "steer", "target": {"kind": "long_tail"}, "strength": 1.0}]}
)


def test_closed_loop_is_seeded_and_steering_raises_target_exposure() -> None:
    base = run_closed_loop(SIM, PolicyConfig(), LOOP)
    again = run_closed_loop(SIM, PolicyConfig(), LOOP)
    assert base.as_dict() == again.as_dict()
    assert len(base.rounds) == LOOP.rounds
    assert all(0 < r.ctr < 1 and 0 <= r.tail_exposure <= 1 for r in base.rounds)
    steered = run_closed_loop(SIM, TAIL, LOOP)
    assert steered.summary["tail_first"] > base.summary["tail_first"] + 0.1
    assert steered.summary["tail_last"] > base.summary["tail_last"]


def test_exploration_runs_in_the_loop_with_a_learning_bandit() -> None:
    explore = PolicyConfig.model_validate(
        {"stages": [{"type": "explore", "share": 0.3, "method": "thompson", "pool": "uncertain"}]}
    )
    result = run_closed_loop(SIM, explore, LOOP)
    assert result.summary["items_shown"] > 0


@pytest.mark.slow
def test_off_policy_estimates_cover_the_true_value() -> None:
    sim = SimulatorConfig(n_users=300, n_items=200, seed=0)
    targets = {
        "model": PolicyConfig(),
        "mmr": PolicyConfig.model_validate({"stages": [{"type": "mmr", "lambda": 0.5}]}),
    }
    out = off_policy_check(sim, targets, n_requests=2000)
    for name, est in out.items():
        s = est["snips"]
        width = s["high"] - s["low"]
        assert s["low"] - width <= est["true"] <= s["high"] + width, name
    with pytest.raises(ValueError, match="deterministic targets"):
        off_policy_check(
            sim,
            {"x": PolicyConfig.model_validate({"stages": [{"type": "explore", "share": 0.1}]})},
            n_requests=50,
        )
