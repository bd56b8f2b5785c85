"""Guidance policies: named stage pipelines from YAML, run after the model's scores.

A policy file::

    default: default
    policies:
      default: {stages: []}
      diverse:
        description: "MMR over item embeddings"
        stages:
          - {type: mmr, lambda: 0.7}
      promote-campaign:
        stages:
          - {type: promote, items: ["12", "57"], max_share: 0.2, positions: [2, 5]}

`Pipeline` computes the blocked items of every filter first, draws the candidates (the top
``candidates`` unblocked items by model score), then runs the other stages in the order given,
and returns the top ``k`` with a reason and a propensity per item. `PolicyRegistry` re-reads
the file when its modification time changes (hot reload); a file that fails to parse leaves
the previous policies in force and the error on ``last_error``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field, ValidationError, model_validator

from recpilot.config import StrictModel, read_config_file
from recpilot.errors import ConfigError
from recpilot.guide.stages import (
    FRESH,
    MMR,
    NOVEL,
    AttributeFilter,
    AttributeOp,
    AttributeRule,
    AvailabilityFilter,
    BanditState,
    Calibration,
    CategoryFilter,
    Exploration,
    ExploreMethod,
    ExplorePool,
    Filter,
    GuideRequest,
    ItemSpace,
    Promotion,
    ScoreBoost,
    SeenFilter,
    Slate,
    Stage,
    freshness_boost,
    novelty_values,
)
from recpilot.guide.steering import Steering, TargetConfig, target_mask
from recpilot.types import BoolArray, FloatArray, IntArray

logger = logging.getLogger(__name__)


# -- configs ---------------------------------------------------------------------------------------
class SeenFilterConfig(StrictModel):
    type: Literal["filter_seen"]


class AvailabilityFilterConfig(StrictModel):
    type: Literal["filter_unavailable"]


class CategoryFilterConfig(StrictModel):
    type: Literal["filter_category"]
    allow: list[str] | None = Field(None, description="keep only these categories")
    deny: list[str] = Field(default_factory=list, description="never these categories")


class AttributeRuleConfig(StrictModel):
    attribute: str
    op: AttributeOp
    value: Any


class AttributeFilterConfig(StrictModel):
    type: Literal["filter_attribute"]
    rules: list[AttributeRuleConfig] = Field(min_length=1)


class BoostConfig(StrictModel):
    """Boost listed items and/or categories by ``weight`` (normalised-relevance units)."""

    type: Literal["boost"]
    items: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    weight: float = Field(0.2, ge=0)
    reason: str = "recommended for you"


class PromotionConfig(StrictModel):
    type: Literal["promote"]
    items: list[str] = Field(min_length=1, description="campaign item ids")
    max_share: float = Field(0.2, ge=0, le=1, description="at most floor(max_share * k) slots")
    positions: list[int] | None = Field(None, description="0-based slots for promoted items")


class MMRConfig(StrictModel):
    type: Literal["mmr"]
    lambda_: float = Field(0.7, ge=0, le=1, alias="lambda", description="1: the model's order")


class CalibrationConfig(StrictModel):
    type: Literal["calibrate"]
    lambda_: float = Field(0.5, ge=0, le=1, alias="lambda", description="0: the model's order")
    alpha: float = Field(0.01, gt=0, lt=1)


class FreshnessConfig(StrictModel):
    type: Literal["freshness"]
    weight: float = Field(0.2, ge=0)
    half_life_days: float = Field(7.0, gt=0)


class NoveltyConfig(StrictModel):
    type: Literal["novelty"]
    weight: float = Field(0.2, ge=0)


class ExplorationConfig(StrictModel):
    type: Literal["explore"]
    share: float = Field(0.1, ge=0, le=1, description="expected share of slots explored")
    method: ExploreMethod = "epsilon"
    pool: ExplorePool = "candidates"
    pool_size: int = Field(50, ge=1)
    min_position: int = Field(0, ge=0, description="slots before this one are never explored")


class SteerConfig(StrictModel):
    type: Literal["steer"]
    target: TargetConfig
    strength: float = Field(0.2, ge=0, description="0: the model's list; > 1: targets first")


StageConfig = Annotated[
    SeenFilterConfig
    | AvailabilityFilterConfig
    | CategoryFilterConfig
    | AttributeFilterConfig
    | BoostConfig
    | PromotionConfig
    | MMRConfig
    | CalibrationConfig
    | FreshnessConfig
    | NoveltyConfig
    | ExplorationConfig
    | SteerConfig,
    Field(discriminator="type"),
]


class PolicyConfig(StrictModel):
    """One named policy: its stages in order and the candidate pool size."""

    description: str = ""
    candidates: int = Field(200, ge=1, description="top items by model score that stages see")
    stages: list[StageConfig] = Field(default_factory=list)


class PoliciesFile(StrictModel):
    """A policy file: named policies and the one used when a request names none."""

    default: str | None = Field(None, description="policy for requests that name none")
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_exists(self) -> PoliciesFile:
        if self.default is not None and self.default not in self.policies:
            raise ValueError(
                f"default policy {self.default!r} is not defined; defined: "
                f"{', '.join(sorted(self.policies)) or '(none)'}"
            )
        return self


class UnknownPolicyError(ConfigError, KeyError):
    """A request named a policy the policy file does not define."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown policy {name!r}; known policies: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


def load_policies(path: str | Path) -> PoliciesFile:
    """Read and validate a policy file (YAML or TOML).

    Raises:
        ConfigError: the file is missing, unreadable or invalid (the message names the field).
    """
    raw = read_config_file(path)
    try:
        return PoliciesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid policy file {path}: {problems}") from exc


# -- the pipeline ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuidedList:
    """One re-ranked list: ``items`` ``(n,)`` indices best first, the model's ``scores``, a
    reason per item (None: the model's own reason) and the propensity of each item at its
    slot under the policy."""

    items: IntArray
    scores: FloatArray
    reasons: list[str | None]
    propensities: npt.NDArray[np.float64]


@dataclass(frozen=True)
class GuidedBatch:
    """Lists of a batch: ``items`` ``(B, k)`` padded with -1, ``propensities`` ``(B, k)``
    (0 at padding), ``reasons`` one list per row."""

    items: IntArray
    propensities: npt.NDArray[np.float64]
    reasons: list[list[str | None]]


def _is_filter(stage: Any) -> bool:
    return hasattr(stage, "blocked") and not hasattr(stage, "apply")


class Pipeline:
    """Filters, then the other stages in order, over a model's scores.

    Args:
        stages: `Filter`s and `Stage`s (filters act first wherever they are listed).
        candidates: how many top unblocked items the stages see.
        name: the policy's name (for logs).
    """

    def __init__(
        self, stages: Sequence[Stage | Filter], candidates: int = 200, name: str = ""
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.filters: list[Filter] = [s for s in stages if _is_filter(s)]  # type: ignore[misc]
        self.stages: list[Stage] = [s for s in stages if not _is_filter(s)]  # type: ignore[misc]
        self.candidates = candidates
        self.name = name

    @classmethod
    def from_config(
        cls,
        config: PolicyConfig,
        space: ItemSpace,
        bandit: BanditState | None = None,
        name: str = "",
    ) -> Pipeline:
        """Build a policy's stages for a catalogue (ids in the config are resolved here).

        Raises:
            ConfigError: a stage cannot be built for this catalogue (the message names it).
        """
        stages: list[Stage | Filter] = []
        for n, sc in enumerate(config.stages):
            try:
                stages.append(_build_stage(sc, space, bandit))
            except (ValueError, KeyError) as exc:
                raise ConfigError(
                    f"policy {name!r}, stage {n} ({sc.type}): {exc.args[0] if exc.args else exc}"
                ) from exc
        return cls(stages, config.candidates, name)

    def blocked(
        self, space: ItemSpace, request: GuideRequest, extra: BoolArray | None = None
    ) -> BoolArray:
        """``(I,)`` items no stage may show to this request."""
        mask = np.zeros(space.n_items, dtype=bool) if extra is None else extra.copy()
        for f in self.filters:
            mask |= f.blocked(space, request)
        return mask

    def run(
        self,
        scores: npt.ArrayLike,
        request: GuideRequest,
        space: ItemSpace,
        blocked: BoolArray | None = None,
    ) -> GuidedList:
        """Re-rank one request.

        Args:
            scores: ``(I,)`` model scores.
            request: history, ``k`` and the random generator.
            space: the catalogue.
            blocked: ``(I,)`` items the caller forbids as well (unavailable, wrong category).
        """
        if request.k < 1:
            raise ValueError(f"k must be >= 1, got {request.k}")
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        if len(s) != space.n_items:
            raise ValueError(f"scores have {len(s)} items, the ItemSpace {space.n_items}")
        mask = self.blocked(space, request, blocked)
        masked = np.where(mask | ~np.isfinite(s), -np.inf, s)
        n = min(max(self.candidates, request.k), int(np.isfinite(masked).sum()))
        if n == 0:
            return GuidedList(np.empty(0, np.int64), np.empty(0, np.float32), [], np.empty(0))
        part = np.argpartition(-masked, n - 1)[:n] if n < len(masked) else np.arange(len(s))
        cand = part[np.lexsort((part, -masked[part]))][:n].astype(np.int64)
        return self._finish(cand, s, mask, request, space)

    def _finish(
        self,
        cand: IntArray,
        s: FloatArray,
        mask: BoolArray,
        request: GuideRequest,
        space: ItemSpace,
    ) -> GuidedList:
        slate = Slate(
            items=cand,
            scores=s[cand].astype(np.float32),
            reasons=[None] * len(cand),
            propensities=np.ones(len(cand)),
            all_scores=s,
            blocked=mask,
        )
        for stage in self.stages:
            slate = stage.apply(slate, space, request)
        k = min(request.k, len(slate.items))
        items = slate.items[:k]
        if mask[items].any():  # pragma: no cover - guards every stage
            raise RuntimeError(f"policy {self.name!r} placed a blocked item in the list")
        return GuidedList(items, s[items], slate.reasons[:k], slate.propensities[:k])

    def run_batch(
        self,
        scores: npt.ArrayLike,
        histories: Sequence[IntArray],
        k: int,
        space: ItemSpace,
        rng: np.random.Generator,
        blocked: BoolArray | None = None,
    ) -> GuidedBatch:
        """Re-rank a batch (candidates drawn with one ``torch.topk``).

        Args:
            scores: ``(B, I)`` model scores.
            histories: the users' histories (item indices).
            k: list length.
            rng: randomness shared by the batch's requests (seeded by the caller).
            blocked: ``(I,)`` items forbidden to every row.
        """
        S = np.asarray(scores, dtype=np.float32)
        B = len(S)
        masks = []
        masked = S.copy()
        for b in range(B):
            req = GuideRequest(np.asarray(histories[b], dtype=np.int64), k, rng)
            m = self.blocked(space, req, blocked)
            masks.append(m)
            masked[b, m] = -np.inf
        n = min(max(self.candidates, k), S.shape[1])
        vals, idx = torch.topk(torch.from_numpy(masked), n, dim=1)
        cand_all, finite = idx.numpy().astype(np.int64), np.isfinite(vals.numpy())
        items = np.full((B, k), -1, dtype=np.int64)
        props = np.zeros((B, k), dtype=np.float64)
        reasons: list[list[str | None]] = []
        for b in range(B):
            req = GuideRequest(np.asarray(histories[b], dtype=np.int64), k, rng)
            out = self._finish(cand_all[b][finite[b]], S[b], masks[b], req, space)
            items[b, : len(out.items)] = out.items
            props[b, : len(out.items)] = out.propensities
            reasons.append(out.reasons)
        return GuidedBatch(items, props, reasons)


def _build_stage(sc: Any, space: ItemSpace, bandit: BanditState | None) -> Stage | Filter:
    if isinstance(sc, SeenFilterConfig):
        return SeenFilter()
    if isinstance(sc, AvailabilityFilterConfig):
        return AvailabilityFilter()
    if isinstance(sc, CategoryFilterConfig):
        return CategoryFilter(sc.allow, sc.deny)
    if isinstance(sc, AttributeFilterConfig):
        return AttributeFilter([AttributeRule(r.attribute, r.op, r.value) for r in sc.rules])
    if isinstance(sc, BoostConfig):
        mask = space.in_categories(sc.categories).astype(np.float32)
        mask[space.index_of(sc.items)] = 1.0
        return ScoreBoost(mask, sc.weight, sc.reason)
    if isinstance(sc, PromotionConfig):
        items = space.index_of(sc.items)
        if len(items) == 0:
            raise ValueError(f"none of the campaign items {sc.items[:5]} is known to the model")
        return Promotion(items, sc.max_share, sc.positions)
    if isinstance(sc, MMRConfig):
        if space.similarity is None and sc.lambda_ < 1:
            raise ValueError("mmr needs item similarity, and this catalogue has none")
        return MMR(sc.lambda_)
    if isinstance(sc, CalibrationConfig):
        return Calibration(sc.lambda_, sc.alpha)
    if isinstance(sc, FreshnessConfig):
        return ScoreBoost(freshness_boost(sc.half_life_days), sc.weight, FRESH)
    if isinstance(sc, NoveltyConfig):
        if space.popularity is None:
            raise ValueError("novelty needs item popularity, and this catalogue has none")
        return ScoreBoost(novelty_values(space.popularity), sc.weight, NOVEL)
    if isinstance(sc, ExplorationConfig):
        return Exploration(sc.share, sc.method, sc.pool, sc.pool_size, sc.min_position, bandit)
    if isinstance(sc, SteerConfig):
        return Steering(target_mask(sc.target, space), sc.strength, sc.target.default_reason())
    raise TypeError(f"unknown stage config {type(sc).__name__}")  # pragma: no cover


# -- hot-reloadable registry -----------------------------------------------------------------------
class PolicyRegistry:
    """Named policies from a file, re-read when the file's modification time changes.

    Args:
        path: the policy file (None: no policies; only the model's own order is served).
        check_seconds: how often the file's mtime is looked at (0: on every call).

    Raises:
        ConfigError: the file is invalid at start (later invalid edits are logged and
            ignored: the previous policies stay in force).
    """

    def __init__(self, path: str | Path | None, check_seconds: float = 1.0) -> None:
        self.path = None if path is None else Path(path)
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._checked = 0.0
        self._mtime: float | None = None
        self.generation = 0
        self.last_error: str | None = None
        self._file = PoliciesFile()
        if self.path is not None:
            self._file = load_policies(self.path)
            self._mtime = os.stat(self.path).st_mtime_ns
            self._checked = time.monotonic()
            self.generation = 1

    @property
    def policies(self) -> PoliciesFile:
        self.reload_if_changed()
        return self._file

    def names(self) -> list[str]:
        return sorted(self.policies.policies)

    def reload_if_changed(self, force: bool = False) -> bool:
        """Re-read the file if its mtime changed; True when new policies were loaded."""
        if self.path is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < self.check_seconds:
            return False
        with self._lock:
            self._checked = now
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except OSError as exc:
                self.last_error = f"cannot read policy file {self.path}: {exc}"
                logger.error("%s; keeping the previous policies", self.last_error)
                return False
            if mtime == self._mtime and not force:
                return False
            try:
                fresh = load_policies(self.path)
            except ConfigError as exc:
                self._mtime = mtime
                self.last_error = str(exc)
                logger.error("%s; keeping the previous policies", exc)
                return False
            self._file, self._mtime = fresh, mtime
            self.generation += 1
            self.last_error = None
            logger.info("policies reloaded from %s: %s", self.path, ", ".join(fresh.policies))
            return True

    def resolve(self, name: str | None) -> tuple[str, PolicyConfig] | None:
        """The named policy (``name`` None: the file's default, or None for the model's order).

        Raises:
            UnknownPolicyError: the name is not defined (the message lists the known ones).
        """
        file = self.policies
        if name is None:
            if file.default is None:
                return None
            name = file.default
        if name not in file.policies:
            raise UnknownPolicyError(name, list(file.policies))
        return name, file.policies[name]


__all__ = [
    "GuidedBatch",
    "GuidedList",
    "Pipeline",
    "PoliciesFile",
    "PolicyConfig",
    "PolicyRegistry",
    "StageConfig",
    "UnknownPolicyError",
    "load_policies",
]
