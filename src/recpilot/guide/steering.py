"""Guidance objectives: steer lists toward a target set with one strength parameter.

A target set is a category, a campaign (explicit item ids) or the long tail. `Steering` adds
``strength`` to the min-max normalised relevance of target items: a target item overtakes a
non-target one whose relevance is higher by less than ``strength``. ``strength = 0`` is the
model's list; ``strength > 1`` puts every target candidate ahead of every other. Sweeping it
trades relevance (NDCG) for reach (target exposure, coverage) knowingly.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from recpilot.config import StrictModel
from recpilot.guide.stages import NOVEL, ItemSpace, ScoreBoost
from recpilot.types import BoolArray

TargetKind = Literal["category", "items", "long_tail"]


class TargetConfig(StrictModel):
    """The set of items to steer toward.

    ``category``: items of ``categories``; ``items``: the listed item ids (a campaign);
    ``long_tail``: the items outside the head, the most popular items that together take
    ``head_share`` of all interactions.
    """

    kind: TargetKind
    categories: list[str] = Field(default_factory=list)
    items: list[str] = Field(default_factory=list)
    head_share: float = Field(0.8, gt=0, lt=1)
    reason: str | None = Field(None, description="reason shown for steered items")

    @model_validator(mode="after")
    def _has_members(self) -> TargetConfig:
        if self.kind == "category" and not self.categories:
            raise ValueError("a category target needs `categories` (a list of category names)")
        if self.kind == "items" and not self.items:
            raise ValueError("an items target needs `items` (a list of item ids)")
        return self

    def default_reason(self) -> str:
        if self.reason is not None:
            return self.reason
        if self.kind == "long_tail":
            return NOVEL
        if self.kind == "category":
            return f"featured in {', '.join(self.categories)}"
        return "featured"


def long_tail_mask(popularity: npt.ArrayLike, head_share: float = 0.8) -> BoolArray:
    """``(I,)`` True for long-tail items: outside the most popular items that together take
    ``head_share`` of all interactions (ties broken by index)."""
    pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
    if not 0 < head_share < 1:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    total = pop.sum()
    tail = np.ones(len(pop), dtype=bool)
    if total <= 0:
        return tail
    order = np.argsort(-pop, kind="stable")
    cum = np.cumsum(pop[order]) / total
    n_head = int(np.searchsorted(cum, head_share, side="left")) + 1
    tail[order[:n_head]] = False
    return tail


def target_mask(target: TargetConfig, space: ItemSpace) -> BoolArray:
    """``(I,)`` membership of the target set in the space's item indices.

    Raises:
        ValueError: a long-tail target without item popularity, or a category/items target
            that matches no item the model knows.
    """
    if target.kind == "long_tail":
        if space.popularity is None:
            raise ValueError("a long_tail target needs item popularity in the ItemSpace")
        return long_tail_mask(space.popularity, target.head_share)
    if target.kind == "category":
        mask = space.in_categories(target.categories)
        if not mask.any():
            known = ", ".join(space.category_names[:20]) or "(no categories)"
            raise ValueError(
                f"target categories {target.categories} match no item; known categories: {known}"
            )
        return mask
    mask = np.zeros(space.n_items, dtype=bool)
    mask[space.index_of(target.items)] = True
    if not mask.any():
        raise ValueError(f"none of the target items {target.items[:5]} is known to the model")
    return mask


class Steering(ScoreBoost):
    """Steer toward a target set with one ``strength`` in [0, inf) (see the module docstring)."""

    kind: ClassVar[str] = "steer"

    def __init__(self, mask: npt.ArrayLike, strength: float, reason: str = "featured") -> None:
        if strength < 0:
            raise ValueError(f"steering strength must be >= 0, got {strength}")
        super().__init__(np.asarray(mask, dtype=np.float32), strength, reason)
        self.strength = strength


def exposure(lists: npt.ArrayLike, mask: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Share of each list's slots (-1 padding ignored) held by target items.

    Args:
        lists: ``(B, K)`` item indices.
        mask: ``(I,)`` target membership.

    Returns:
        ``(B,)`` float64 in [0, 1].
    """
    ids = np.asarray(lists, dtype=np.int64)
    m = np.asarray(mask, dtype=bool)
    valid = ids >= 0
    hit = valid & m[np.where(valid, ids, 0)]
    n = valid.sum(axis=1)
    return np.where(n > 0, hit.sum(axis=1) / np.maximum(n, 1), 0.0)


__all__ = ["Steering", "TargetConfig", "exposure", "long_tail_mask", "target_mask"]
