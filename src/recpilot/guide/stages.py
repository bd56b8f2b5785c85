"""Re-ranking stages applied to a model's scores: filters, boosts, promotion, diversity,
calibration and exploration.

A `Slate` is the candidate list of one request being re-ranked: item indices in their current
order, working scores, a reason per item (None: the model's own) and the propensity of each
item being shown at its position under the policy (1 for deterministic stages). Stages take a
slate and return a new one; filters instead mark items as blocked before the candidates are
drawn, and no later stage may show a blocked item (promotion and exploration draw only from
unblocked items).

Propensities are per slot and conditional on the earlier slots: for every slot, summed over
all items the policy could have put there, they add up to 1.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from recpilot.guide.similarity import ItemSimilarity
from recpilot.types import BoolArray, FloatArray, IntArray

logger = logging.getLogger(__name__)

#: Reasons the stages give to the items they place (the service shows them to the user).
PROMOTED = "promoted"
EXPLORING = "exploring something new"
DIVERSIFY = "to diversify"
CALIBRATE = "to balance your interests"
FRESH = "new arrival"
NOVEL = "a less known pick"


# -- what stages know ------------------------------------------------------------------------------
@dataclass
class ItemSpace:
    """The catalogue as the stages see it, in the model's item indices.

    Attributes:
        n_items: catalogue size ``I``.
        item_ids: external id per index (to resolve ids named in policies); None: ``str(i)``.
        categories: ``(I,)`` category code per item, -1 for none.
        category_names: name of each code.
        category_weights: ``(I, C)`` category distribution per item (rows sum to 1, or 0 for
            items without a category); None: one-hot from ``categories``. Multi-genre items
            spread their weight (Steck 2018).
        available: ``(I,)`` False for items that must never be shown.
        popularity: ``(I,)`` interaction counts (novelty, long tail).
        created_at: ``(I,)`` creation time in epoch seconds (NaN unknown), for freshness.
        attributes: item attribute arrays ``(I,)`` by name, for attribute rules.
        similarity: item similarity for MMR (None: MMR refuses to run).
        new_items: indices of items to explore first (e.g. recently added).
    """

    n_items: int
    item_ids: Sequence[str] | None = None
    categories: IntArray | None = None
    category_names: tuple[str, ...] = ()
    category_weights: FloatArray | None = None
    available: BoolArray | None = None
    popularity: npt.NDArray[np.float64] | None = None
    created_at: npt.NDArray[np.float64] | None = None
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    similarity: ItemSimilarity | None = None
    new_items: IntArray | None = None
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = self.n_items
        for name in ("categories", "available", "popularity", "created_at"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"ItemSpace.{name} has {len(arr)} entries, expected {n}")
        for name, arr in self.attributes.items():
            if len(arr) != n:
                raise ValueError(
                    f"ItemSpace attribute {name!r} has {len(arr)} entries, expected {n}"
                )
        if self.category_weights is None and self.categories is not None:
            codes = np.asarray(self.categories, dtype=np.int64)
            n_cat = max(len(self.category_names), int(codes.max(initial=-1)) + 1)
            weights = np.zeros((n, n_cat), dtype=np.float32)
            has = codes >= 0
            weights[np.flatnonzero(has), codes[has]] = 1.0
            self.category_weights = weights

    def index_of(self, item_ids: Sequence[str]) -> IntArray:
        """Indices of external ids (ids the model does not know are skipped)."""
        if self._index is None:
            ids = self.item_ids if self.item_ids is not None else range(self.n_items)
            self._index = {str(i): n for n, i in enumerate(ids)}
        out = [self._index[str(i)] for i in item_ids if str(i) in self._index]
        return np.asarray(out, dtype=np.int64)

    def category_codes(self, names: Sequence[str]) -> IntArray:
        """Codes of category names (names the catalogue lacks are skipped)."""
        lookup = {c: n for n, c in enumerate(self.category_names)}
        return np.asarray([lookup[c] for c in names if c in lookup], dtype=np.int64)

    def in_categories(self, names: Sequence[str]) -> BoolArray:
        """``(I,)`` True for items in any of the named categories (any genre when multi-genre)."""
        codes = self.category_codes(names)
        if len(codes) == 0 or self.category_weights is None:
            return np.zeros(self.n_items, dtype=bool)
        return np.asarray(self.category_weights[:, codes].sum(axis=1) > 0, dtype=bool)


@dataclass
class GuideRequest:
    """One request: the user's history (item indices, oldest first), list length and randomness."""

    history: IntArray
    k: int
    rng: np.random.Generator
    now: float | None = None  # epoch seconds, for freshness


@dataclass
class Slate:
    """Candidates of one request in their current order.

    ``items`` ``(n,)`` item indices; ``scores`` ``(n,)`` working scores (stages rescale them);
    ``reasons[j]`` the stage that placed item ``j`` (None: the model); ``propensities`` ``(n,)``
    the probability that the item is shown at its slot; ``all_scores`` ``(I,)`` the model's
    scores of every item; ``blocked`` ``(I,)`` items that must never be shown.
    """

    items: IntArray
    scores: FloatArray
    reasons: list[str | None]
    propensities: npt.NDArray[np.float64]
    all_scores: FloatArray
    blocked: BoolArray

    def reorder(self, order: IntArray, scores: FloatArray | None = None) -> Slate:
        """A slate with the items in ``order`` (positions into this slate)."""
        return replace(
            self,
            items=self.items[order],
            scores=(self.scores[order] if scores is None else scores[order]),
            reasons=[self.reasons[j] for j in order],
            propensities=self.propensities[order],
        )


def normalise(scores: npt.ArrayLike) -> FloatArray:
    """Min-max scaling to [0, 1] (a constant vector becomes zeros); keeps the order."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s.astype(np.float32)
    lo, hi = float(s.min()), float(s.max())
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return np.zeros(len(s), dtype=np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)


def mark_entrants(before: Slate, after: Slate, k: int, reason: str) -> Slate:
    """Give ``reason`` to the items of ``after``'s top ``k`` that were not in ``before``'s."""
    old = set(before.items[:k].tolist())
    reasons = list(after.reasons)
    for j, item in enumerate(after.items[:k].tolist()):
        if item not in old and reasons[j] is None:
            reasons[j] = reason
    return replace(after, reasons=reasons)


class Stage(Protocol):
    """A re-ranking step over one request's slate."""

    kind: ClassVar[str]

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate: ...


# -- filters ---------------------------------------------------------------------------------------
class Filter(Protocol):
    """A hard filter: items it blocks never appear in the list."""

    kind: ClassVar[str]

    def blocked(self, space: ItemSpace, request: GuideRequest) -> BoolArray: ...


class SeenFilter:
    """Blocks the items in the user's history."""

    kind: ClassVar[str] = "filter_seen"

    def blocked(self, space: ItemSpace, request: GuideRequest) -> BoolArray:
        mask = np.zeros(space.n_items, dtype=bool)
        h = request.history
        mask[h[(h >= 0) & (h < space.n_items)]] = True
        return mask


class AvailabilityFilter:
    """Blocks items the catalogue marks unavailable."""

    kind: ClassVar[str] = "filter_unavailable"

    def blocked(self, space: ItemSpace, request: GuideRequest) -> BoolArray:
        if space.available is None:
            return np.zeros(space.n_items, dtype=bool)
        return ~np.asarray(space.available, dtype=bool)


class CategoryFilter:
    """Keeps only items of ``allow`` (when given) and blocks items of ``deny``.

    Items without a category are blocked by an allow-list and kept by a deny-list.
    """

    kind: ClassVar[str] = "filter_category"

    def __init__(self, allow: Sequence[str] | None = None, deny: Sequence[str] = ()) -> None:
        self.allow = None if allow is None else list(allow)
        self.deny = list(deny)
        self._cache: tuple[ItemSpace, BoolArray] | None = None

    def blocked(self, space: ItemSpace, request: GuideRequest) -> BoolArray:
        if self._cache is not None and self._cache[0] is space:
            return self._cache[1]
        mask = space.in_categories(self.deny)
        if self.allow is not None:
            mask |= ~space.in_categories(self.allow)
        self._cache = (space, mask)
        return mask


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
AttributeOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]


@dataclass(frozen=True)
class AttributeRule:
    """Keep items whose ``attribute`` satisfies ``op value`` (others are blocked).

    Items with a missing value (None/NaN) fail every rule.
    """

    attribute: str
    op: AttributeOp
    value: Any

    def passes(self, values: np.ndarray) -> BoolArray:
        if self.op in ("in", "not_in"):
            wanted = set(self.value)
            hit = np.fromiter((v in wanted for v in values), dtype=bool, count=len(values))
            return hit if self.op == "in" else ~hit & _present(values)
        out = np.zeros(len(values), dtype=bool)
        present = _present(values)
        fn = _OPS[self.op]
        for j in np.flatnonzero(present):
            try:
                out[j] = bool(fn(values[j], self.value))
            except TypeError:
                out[j] = False
        return out


def _present(values: np.ndarray) -> BoolArray:
    return np.fromiter(
        (v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values),
        dtype=bool,
        count=len(values),
    )


class AttributeFilter:
    """Blocks items that fail any of the rules (all rules must hold)."""

    kind: ClassVar[str] = "filter_attribute"

    def __init__(self, rules: Sequence[AttributeRule]) -> None:
        self.rules = list(rules)
        self._cache: tuple[ItemSpace, BoolArray] | None = None

    def blocked(self, space: ItemSpace, request: GuideRequest) -> BoolArray:
        if self._cache is not None and self._cache[0] is space:
            return self._cache[1]
        keep = np.ones(space.n_items, dtype=bool)
        for rule in self.rules:
            if rule.attribute not in space.attributes:
                known = sorted(space.attributes) or ["(none)"]
                raise KeyError(
                    f"attribute rule on {rule.attribute!r}: the catalogue has no such item "
                    f"attribute; known attributes: {', '.join(known)}"
                )
            keep &= rule.passes(np.asarray(space.attributes[rule.attribute], dtype=object))
        self._cache = (space, ~keep)
        return ~keep


# -- boosts ----------------------------------------------------------------------------------------
class ScoreBoost:
    """Adds ``weight * boost[item]`` to the min-max normalised scores and re-sorts.

    With normalised relevance in [0, 1], a boosted item overtakes an unboosted one whose
    relevance is higher by less than ``weight * boost``. Items the boost moves into the top
    ``k`` get ``reason``.

    Args:
        boost: ``(I,)`` boost per item (e.g. a 0/1 target mask), or a function of the space
            and request that returns one.
        weight: strength (>= 0).
    """

    kind: ClassVar[str] = "boost"

    def __init__(
        self,
        boost: npt.ArrayLike | Callable[[ItemSpace, GuideRequest], FloatArray],
        weight: float,
        reason: str,
    ) -> None:
        if weight < 0:
            raise ValueError(f"boost weight must be >= 0, got {weight}")
        self.boost = boost
        self.weight = weight
        self.reason = reason

    def values(self, space: ItemSpace, request: GuideRequest) -> FloatArray:
        if callable(self.boost):
            return np.asarray(self.boost(space, request), dtype=np.float32)
        return np.asarray(self.boost, dtype=np.float32)

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate:
        if self.weight == 0 or len(slate.items) == 0:
            return slate
        new = normalise(slate.scores) + self.weight * self.values(space, request)[slate.items]
        order = np.argsort(-new, kind="stable").astype(np.int64)
        return mark_entrants(slate, slate.reorder(order, new), request.k, self.reason)


def freshness_boost(half_life_days: float) -> Callable[[ItemSpace, GuideRequest], FloatArray]:
    """``exp(-age / half_life * ln 2)`` from ``ItemSpace.created_at`` (0 when unknown)."""
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")

    def values(space: ItemSpace, request: GuideRequest) -> FloatArray:
        if space.created_at is None:
            return np.zeros(space.n_items, dtype=np.float32)
        import time

        now = request.now if request.now is not None else time.time()
        age_days = np.maximum(now - space.created_at, 0.0) / 86_400.0
        fresh = np.exp(-age_days * math.log(2) / half_life_days)
        return np.nan_to_num(fresh, nan=0.0).astype(np.float32)

    return values


def novelty_values(popularity: npt.ArrayLike) -> FloatArray:
    """Self-information ``-log2 p(item)`` (add-one smoothed) scaled to [0, 1]."""
    pop = np.asarray(popularity, dtype=np.float64)
    p = (pop + 1.0) / (pop.sum() + len(pop))
    info = -np.log2(p)
    return normalise(info)


# -- promotion -------------------------------------------------------------------------------------
class Promotion:
    """Campaign items placed at fixed slots, at most ``floor(max_share * k)`` per list.

    The campaign items the model scores highest (and no filter blocks) go to ``positions``
    (0-based; default: spread over the list, never the first slot); campaign items already in
    the list on their own merit keep their place and are not counted as promoted.
    """

    kind: ClassVar[str] = "promote"

    def __init__(
        self, items: IntArray, max_share: float, positions: Sequence[int] | None = None
    ) -> None:
        if not 0 <= max_share <= 1:
            raise ValueError(f"max_share must be in [0, 1], got {max_share}")
        if positions is not None and any(p < 0 for p in positions):
            raise ValueError(f"promotion positions must be >= 0, got {list(positions)}")
        self.items = np.unique(np.asarray(items, dtype=np.int64))
        self.max_share = max_share
        self.positions = None if positions is None else sorted(set(positions))

    def slots(self, k: int) -> list[int]:
        n = math.floor(self.max_share * k + 1e-9)
        if n == 0:
            return []
        if self.positions is not None:
            return [p for p in self.positions if p < k][:n]
        step = max(1, k // n)
        return [p for p in range(min(1, k - 1), k, step)][:n]

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate:
        k = request.k
        slots = self.slots(k)
        if not slots or len(self.items) == 0:
            return slate
        top = slate.items[:k].tolist()
        present = set(top)
        pool = [int(i) for i in self.items if not slate.blocked[i] and int(i) not in present]
        if not pool:
            return slate
        pool.sort(key=lambda i: -float(slate.all_scores[i]))
        picks = pool[: len(slots)]
        items = slate.items.tolist()
        scores = slate.scores.tolist()
        reasons = list(slate.reasons)
        props = slate.propensities.tolist()
        top_score = float(slate.scores[0]) if len(slate.scores) else 0.0
        for slot, item in zip(slots, picks, strict=False):
            if item in items:  # in the pool below the cut: move it up
                j = items.index(item)
                del items[j], scores[j], reasons[j], props[j]
            at = min(slot, len(items))
            items.insert(at, item)
            scores.insert(at, top_score)
            reasons.insert(at, PROMOTED)
            props.insert(at, 1.0)
        return replace(
            slate,
            items=np.asarray(items, dtype=np.int64),
            scores=np.asarray(scores, dtype=np.float32),
            reasons=reasons,
            propensities=np.asarray(props, dtype=np.float64),
        )


# -- diversity -------------------------------------------------------------------------------------
class MMR:
    """Maximal marginal relevance (Carbonell & Goldstein 1998) over item similarity.

    Picks the top ``k`` greedily by ``lam * rel(i) - (1 - lam) * max_{j chosen} sim(i, j)``,
    with ``rel`` the min-max normalised working scores; ties go to the earlier item, so
    ``lam = 1`` keeps the incoming order exactly. Items after the top ``k`` keep their order.
    """

    kind: ClassVar[str] = "mmr"

    def __init__(self, lam: float, similarity: ItemSimilarity | None = None) -> None:
        if not 0 <= lam <= 1:
            raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
        self.lam = lam
        self.similarity = similarity

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate:
        n, k = len(slate.items), min(request.k, len(slate.items))
        if n < 2:
            return slate
        # no shortcut at lam == 1: the greedy loop itself must give the incoming order
        sim_provider = self.similarity or space.similarity
        if sim_provider is None and self.lam == 1.0:
            return slate  # pure relevance: nothing to compare
        if sim_provider is None:
            raise ValueError(
                "the mmr stage needs item similarity: give the ItemSpace a similarity provider "
                "(item embeddings, co-occurrence vectors or categories)"
            )
        rel = normalise(slate.scores).astype(np.float64)
        sim = sim_provider.similarity(slate.items, slate.items).astype(np.float64)  # (n, n)
        max_sim = np.zeros(n)
        free = np.ones(n, dtype=bool)
        chosen: list[int] = []
        for _ in range(k):
            value = self.lam * rel - (1.0 - self.lam) * max_sim
            value[~free] = -np.inf
            j = int(np.argmax(value))
            chosen.append(j)
            free[j] = False
            max_sim = np.maximum(max_sim, sim[:, j])
        order = np.asarray(chosen + np.flatnonzero(free).tolist(), dtype=np.int64)
        return mark_entrants(slate, slate.reorder(order), request.k, DIVERSIFY)


def history_distribution(space: ItemSpace, history: IntArray) -> npt.NDArray[np.float64] | None:
    """The user's category distribution ``p(g|u)`` from the history (None if it has none)."""
    if space.category_weights is None or len(history) == 0:
        return None
    h = history[(history >= 0) & (history < space.n_items)]
    p = np.asarray(space.category_weights[h], dtype=np.float64).sum(axis=0)
    total = p.sum()
    return None if total <= 0 else p / total


def miscalibration(
    p: npt.NDArray[np.float64], weights: npt.ArrayLike, alpha: float = 0.01
) -> float:
    """``KL(p || q~)`` of Steck (2018): ``q`` the list's category mix, ``q~ = (1-a) q + a p``."""
    q = np.asarray(weights, dtype=np.float64).sum(axis=0)
    q = q / q.sum() if q.sum() > 0 else np.zeros_like(p)
    qt = (1 - alpha) * q + alpha * p
    nz = p > 0
    return float(np.sum(p[nz] * (np.log(p[nz]) - np.log(qt[nz]))))


class Calibration:
    """Calibrated recommendations (Steck, RecSys 2018): the list's category mix follows the
    user's history.

    Greedy maximisation of ``(1 - lam) * sum rel - lam * KL(p || q~)``; ``lam = 0`` keeps the
    incoming order. Users without a categorised history keep theirs.
    """

    kind: ClassVar[str] = "calibrate"

    def __init__(self, lam: float, alpha: float = 0.01) -> None:
        if not 0 <= lam <= 1:
            raise ValueError(f"calibration lambda must be in [0, 1], got {lam}")
        if not 0 < alpha < 1:
            raise ValueError(f"calibration alpha must be in (0, 1), got {alpha}")
        self.lam = lam
        self.alpha = alpha

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate:
        n, k = len(slate.items), min(request.k, len(slate.items))
        if self.lam == 0 or n < 2:
            return slate
        p = history_distribution(space, request.history)
        if p is None:
            return slate
        assert space.category_weights is not None
        W = np.asarray(space.category_weights[slate.items], dtype=np.float64)  # (n, C)
        rel = normalise(slate.scores).astype(np.float64)
        nz = p > 0
        logp = np.log(p[nz])
        acc = np.zeros(W.shape[1])
        free = np.ones(n, dtype=bool)
        chosen: list[int] = []
        for _ in range(k):
            q = acc[None, :] + W  # (n, C)
            tot = q.sum(axis=1, keepdims=True)
            q = np.divide(q, tot, out=np.zeros_like(q), where=tot > 0)
            qt = (1 - self.alpha) * q[:, nz] + self.alpha * p[nz]
            kl = (p[nz] * (logp - np.log(qt))).sum(axis=1)
            value = (1 - self.lam) * rel - self.lam * kl
            value[~free] = -np.inf
            j = int(np.argmax(value))
            chosen.append(j)
            free[j] = False
            acc += W[j]
        order = np.asarray(chosen + np.flatnonzero(free).tolist(), dtype=np.int64)
        return mark_entrants(slate, slate.reorder(order), request.k, CALIBRATE)


# -- exploration -----------------------------------------------------------------------------------
class BanditState:
    """Beta posteriors of each item's click rate: ``Beta(a0 + clicks, b0 + shows - clicks)``.

    Args:
        n_items: catalogue size.
        prior_a, prior_b: the prior's pseudo-counts.
    """

    def __init__(self, n_items: int, prior_a: float = 1.0, prior_b: float = 1.0) -> None:
        if prior_a <= 0 or prior_b <= 0:
            raise ValueError(f"Beta prior must be positive, got a={prior_a}, b={prior_b}")
        self.prior_a = prior_a
        self.prior_b = prior_b
        self.shows = np.zeros(n_items, dtype=np.float64)
        self.clicks = np.zeros(n_items, dtype=np.float64)

    def update(self, items: npt.ArrayLike, clicked: npt.ArrayLike) -> None:
        """Record shows of ``items`` and whether each was clicked."""
        it = np.asarray(items, dtype=np.int64)
        np.add.at(self.shows, it, 1.0)
        np.add.at(self.clicks, it, np.asarray(clicked, dtype=np.float64))

    def posterior(self, items: IntArray) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        a = self.prior_a + self.clicks[items]
        b = self.prior_b + self.shows[items] - self.clicks[items]
        return a, b

    def variance(self, items: IntArray) -> npt.NDArray[np.float64]:
        a, b = self.posterior(items)
        return np.asarray(a * b / ((a + b) ** 2 * (a + b + 1)), dtype=np.float64)


ExploreMethod = Literal["epsilon", "thompson"]
ExplorePool = Literal["candidates", "new", "uncertain"]


class Exploration:
    """A share of slots given to exploration, each with its propensity.

    Every slot from ``min_position`` on is, independently with probability ``share``, an
    exploration slot; the others keep the exploit item (propensity ``1 - share`` times what
    it had). An exploration slot takes an item from the pool, uniformly (``epsilon``,
    propensity ``share / pool size``) or by Thompson sampling over the Beta posteriors
    (``thompson``, propensity ``share * P(item wins)`` estimated from ``n_mc`` posterior
    draws plus the draw taken). The pool: the candidates just below the list
    (``candidates``), the catalogue's new items (``new``, then candidates), or the candidates
    whose click rate is most uncertain (``uncertain``); blocked and listed items never.
    """

    kind: ClassVar[str] = "explore"

    def __init__(
        self,
        share: float,
        method: ExploreMethod = "epsilon",
        pool: ExplorePool = "candidates",
        pool_size: int = 50,
        min_position: int = 0,
        bandit: BanditState | None = None,
        n_mc: int = 200,
    ) -> None:
        if not 0 <= share <= 1:
            raise ValueError(f"exploration share must be in [0, 1], got {share}")
        if pool_size < 1:
            raise ValueError(f"exploration pool_size must be >= 1, got {pool_size}")
        if method not in ("epsilon", "thompson"):
            raise ValueError(f"exploration method must be 'epsilon' or 'thompson', got {method!r}")
        if pool not in ("candidates", "new", "uncertain"):
            raise ValueError(
                f"exploration pool must be 'candidates', 'new' or 'uncertain', got {pool!r}"
            )
        self.share = share
        self.method = method
        self.pool = pool
        self.pool_size = pool_size
        self.min_position = min_position
        self.bandit = bandit
        self.n_mc = n_mc

    def _pool(self, slate: Slate, space: ItemSpace, k: int) -> list[int]:
        listed = set(slate.items[:k].tolist())
        below = [int(i) for i in slate.items[k:] if not slate.blocked[i]]
        if self.pool == "new" and space.new_items is not None:
            fresh = [
                int(i) for i in space.new_items if not slate.blocked[i] and int(i) not in listed
            ]
            seen = set(fresh)
            return (fresh + [i for i in below if i not in seen])[: self.pool_size]
        if self.pool == "uncertain" and self.bandit is not None and below:
            wide = np.asarray(below[: 4 * self.pool_size], dtype=np.int64)
            var = self.bandit.variance(wide)
            top = np.argsort(-var, kind="stable")[: self.pool_size]
            return wide[np.sort(top)].tolist()
        return below[: self.pool_size]

    def _thompson(self, pool: list[int], rng: np.random.Generator) -> tuple[int, float]:
        bandit = self.bandit or BanditState(max(pool) + 1)
        a, b = bandit.posterior(np.asarray(pool, dtype=np.int64))
        draws = rng.beta(a[None, :], b[None, :], size=(self.n_mc + 1, len(pool)))
        wins = np.bincount(draws.argmax(axis=1), minlength=len(pool))
        pick = int(draws[0].argmax())
        return pick, float(wins[pick] / (self.n_mc + 1))

    def apply(self, slate: Slate, space: ItemSpace, request: GuideRequest) -> Slate:
        k = min(request.k, len(slate.items))
        if self.share == 0 or k == 0:
            return slate
        pool = self._pool(slate, space, request.k)
        if not pool:
            return slate
        items = slate.items.copy()
        reasons = list(slate.reasons)
        props = slate.propensities.copy()
        rng = request.rng
        displaced: list[int] = []
        for slot in range(self.min_position, k):
            if not pool:
                break
            if rng.random() >= self.share:
                props[slot] *= 1.0 - self.share
                continue
            if self.method == "epsilon":
                j = int(rng.integers(len(pool)))
                p = 1.0 / len(pool)
            else:
                j, p = self._thompson(pool, rng)
            item = pool.pop(j)
            displaced.append(int(items[slot]))
            where = np.flatnonzero(items == item)
            items[slot] = item
            reasons[slot] = EXPLORING
            props[slot] = self.share * p
            if len(where):  # the explored item came from below the list: its old place goes
                items[where[0]] = -1
        rest = [j for j in range(k, len(items)) if items[j] >= 0]
        head = list(range(k))
        order = head + rest
        new_items = np.concatenate([items[order], np.asarray(displaced, dtype=np.int64)])
        n_disp = len(displaced)
        return replace(
            slate,
            items=new_items,
            scores=np.concatenate(
                [slate.scores[:k], slate.scores[rest], np.full(n_disp, -np.inf, np.float32)]
            ).astype(np.float32),
            reasons=[reasons[j] for j in order] + [None] * n_disp,
            propensities=np.concatenate([props[order], np.zeros(n_disp)]),
        )


__all__ = [
    "CALIBRATE",
    "DIVERSIFY",
    "EXPLORING",
    "FRESH",
    "MMR",
    "NOVEL",
    "PROMOTED",
    "AttributeFilter",
    "AttributeRule",
    "AvailabilityFilter",
    "BanditState",
    "Calibration",
    "CategoryFilter",
    "Exploration",
    "Filter",
    "GuideRequest",
    "ItemSpace",
    "Promotion",
    "ScoreBoost",
    "SeenFilter",
    "Slate",
    "Stage",
    "freshness_boost",
    "history_distribution",
    "mark_entrants",
    "miscalibration",
    "normalise",
    "novelty_values",
]
