"""Fixtures of the behaviour tests: a small simulated shop and its dataset."""

from __future__ import annotations

import pytest

from recpilot.behaviour.dataset import BehaviourDataset, build_dataset
from recpilot.config import SimulatorConfig
from recpilot.data.simulator import SimulatedData, Simulator


@pytest.fixture(scope="session")
def simulated() -> SimulatedData:
    return Simulator(SimulatorConfig(n_users=300, n_items=120, n_categories=6, seed=3)).generate()


@pytest.fixture(scope="session")
def sim_dataset(simulated: SimulatedData) -> BehaviourDataset:
    return build_dataset(simulated.log)
