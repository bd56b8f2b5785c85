"""Steering toward a target set with one strength parameter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recpilot.guide.policy import Pipeline
from recpilot.guide.stages import GuideRequest, ItemSpace
from recpilot.guide.steering import Steering, TargetConfig, exposure, long_tail_mask, target_mask

from .conftest import N_ITEMS


@settings(max_examples=60, deadline=None)
@given(
    pop=st.lists(st.integers(0, 1000), min_size=1, max_size=60),
    share=st.floats(0.05, 0.95),
)
def test_long_tail_is_everything_outside_the_head(pop: list[int], share: float) -> None:
    p = np.asarray(pop, dtype=np.float64)
    tail = long_tail_mask(p, share)
    if p.sum() == 0:
        assert tail.all()
        return
    head = ~tail
    assert p[head].sum() >= share * p.sum() - 1e-9  # the head takes at least its share
    # and is minimal: dropping its least popular item falls below the share
    least = np.flatnonzero(head)[np.argmin(p[head])]
    assert p[head].sum() - p[least] < share * p.sum() + 1e-9
    if tail.any() and head.any():
        assert p[tail].max() <= p[head].min()


def _run(
    space: ItemSpace, scores: np.ndarray, mask: np.ndarray, strength: float, k: int = 10
) -> np.ndarray:
    pipe = Pipeline([Steering(mask, strength, "featured")], candidates=60)
    return pipe.run(
        scores, GuideRequest(np.empty(0, np.int64), k, np.random.default_rng()), space
    ).items


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 30))
def test_exposure_grows_with_strength_and_zero_is_the_model(
    space: ItemSpace, seed: int, k: int
) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(N_ITEMS).astype(np.float32)
    mask = rng.random(N_ITEMS) < 0.3
    base = (
        Pipeline([], candidates=60)
        .run(scores, GuideRequest(np.empty(0, np.int64), k, rng), space)
        .items
    )
    assert _run(space, scores, mask, 0.0, k).tolist() == base.tolist()
    shares = [
        exposure(_run(space, scores, mask, s, k)[None, :], mask)[0]
        for s in (0.0, 0.1, 0.3, 0.6, 1.0)
    ]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(shares))
    # strength above 1: every target candidate ranks ahead of every other
    top = _run(space, scores, mask, 1.01, 60)
    flags = mask[top]
    assert not np.any(~flags[:-1] & flags[1:])


def test_target_masks(space: ItemSpace) -> None:
    cat = target_mask(TargetConfig(kind="category", categories=["music"]), space)
    assert cat.tolist() == space.in_categories(["music"]).tolist() and cat.any()
    items = target_mask(TargetConfig(kind="items", items=["i1", "i9", "unknown"]), space)
    assert np.flatnonzero(items).tolist() == [1, 9]
    tail = target_mask(TargetConfig(kind="long_tail", head_share=0.5), space)
    assert not tail[0] and tail[-1]
    with pytest.raises(ValueError, match="needs `categories`"):
        TargetConfig(kind="category")
    with pytest.raises(ValueError, match="none of the target items"):
        target_mask(TargetConfig(kind="items", items=["nope"]), space)
    with pytest.raises(ValueError, match="needs item popularity"):
        target_mask(TargetConfig(kind="long_tail"), ItemSpace(3))


def test_exposure_ignores_padding() -> None:
    mask = np.asarray([True, False, True])
    assert exposure(np.asarray([[0, 1, -1], [-1, -1, -1]]), mask).tolist() == [0.5, 0.0]
