"""Shared fixtures: where the public datasets live, and small synthetic logs."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
import torch

# Two CI cores: one torch thread per test process keeps xdist workers from fighting.
torch.set_num_threads(max(1, int(os.environ.get("RECPILOT_TEST_THREADS", "1"))))
os.environ.setdefault("RECPILOT_PROGRESS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The public datasets folder: $RECPILOT_DATA_DIR or ../shared/data beside the repository."""
    env = os.environ.get("RECPILOT_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()


def dataset_path(name: str) -> Path:
    """Path of one public dataset, skipping the test with a clear reason when absent."""
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"public dataset {name!r} not found at {path} (set RECPILOT_DATA_DIR)")
    return path


@pytest.fixture
def tiny_events() -> pl.DataFrame:
    """Three users, five items, a few events with ties and a duplicate."""
    return pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c", "c"],
            "item_id": [1, 2, 3, 3, 2, 4, 5, 1, 2, 4, 5],
            "timestamp": [10, 20, 30, 30, 5, 6, 7, 1, 2, 3, 4],
            "event_type": ["click"] * 11,
        }
    )
