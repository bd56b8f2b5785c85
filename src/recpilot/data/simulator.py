"""A seeded synthetic behaviour simulator: RecPilot's embedded default data and test bed.

The generative model (every random draw comes from ``SimulatorConfig.seed``):

- **Items.** Each item has a category; category centroids are random unit directions in
  ``R^D`` and an item's latent vector is its centroid plus noise (normalised), so items
  cluster by category. Popularity follows a power law: a random popularity rank ``r`` gives a
  view-odds bias ``-zipf_exponent * log r``. Each item has a price (log-normal around a
  per-category median), a click quality, a title built from per-category word lists, and
  ``n_successors`` designated successors: the next items of a "series" chain that runs through
  the items of its category.
- **Users.** A price-sensitivity segment, a fixed personal vector, and category preference
  logits that start concentrated on a few categories and drift by a Gaussian random walk at
  every session. A session's taste vector is the preference-weighted mix of category
  centroids plus the personal vector; ``affinity(user, item) = taste · item_vector``.
- **Views.** Users have a negative-binomial number of sessions of negative-binomial length.
  With probability ``follow_probability`` (and only if the user has clicked before) the next
  view is a successor of the user's last clicked item (successor ``k`` with weight
  ``2^-k``); otherwise it is drawn from ``softmax(popularity_bias + taste_weight * affinity)``.
- **Funnel.** Every view may lead to a click, a click to a cart, a cart to a purchase::

      p_click          = sigmoid(click_bias + click_affinity * affinity
                                 + click_successor * [item is a successor of the last click]
                                 + quality[item])
      p_cart | click   = sigmoid(cart_bias + cart_affinity * affinity
                                 - sensitivity[segment] * cart_price * z_log_price[item])
      p_purchase | cart = sigmoid(purchase_bias + purchase_affinity * affinity
                                 - sensitivity[segment] * purchase_price * z_log_price[item])

- **Clock.** Sessions are separated by gaps of hours to days; within a session the funnel
  events follow each other by seconds, and the next view follows the end of the previous
  funnel by seconds to minutes. Timestamps are milliseconds from ``start_timestamp_ms``.

`Simulator.generate` returns the event log together with the ground truth of every view (the
true probabilities and the realised outcomes), so a model's AUC or log-loss can be set
against the Bayes-optimal values (`bayes_optimal_metrics`). After `generate`, the simulator
keeps every user's current taste and last click, and `Simulator.respond`,
`Simulator.next_item_probabilities` and `Simulator.choice_probabilities` answer for shown
items with the same model, so guidance policies can be tested against it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recpilot.config import SimulatorConfig
from recpilot.data.schema import EventLog, EventType
from recpilot.errors import NotFittedError, UnknownIdError
from recpilot.types import BoolArray, IntArray

logger = logging.getLogger(__name__)

F64Array = npt.NDArray[np.float64]
IdsLike = Sequence[int] | npt.NDArray[np.integer[Any]]
RngLike = np.random.Generator | int | None

#: Scale of the category part of a user's taste vector, and of the personal part.
_TASTE_SCALE = 2.5
_PERSONAL_SCALE = 0.5
#: Segments: name, share of users, price sensitivity (multiplies the price penalties).
_SEGMENTS = (("bargain", 0.3, 2.0), ("regular", 0.5, 1.0), ("premium", 0.2, 0.3))
#: Decay of successor weights: successor k (0-based) has weight 2^-k.
_SUCCESSOR_DECAY = 0.5
#: Shape of the gamma mixing behind the negative-binomial session counts and lengths.
_SESSIONS_SHAPE = 2.0
_LENGTH_SHAPE = 1.5
#: Users start their first session within this many days of the clock start.
_START_SPREAD_DAYS = 14
_FUNNEL_STEPS = (EventType.VIEW, EventType.CLICK, EventType.CART, EventType.PURCHASE)

_ADJECTIVES = (
    "Vintage", "Classic", "Modern", "Essential", "Premium", "Everyday", "Nordic", "Rustic",
    "Urban", "Deluxe", "Minimalist", "Heritage", "Signature", "Coastal", "Alpine", "Bold",
)  # fmt: skip
#: (category name, modifiers, nouns): titles are "<adjective> <modifier> <noun>".
_THEMES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "apparel",
        ("Linen", "Cotton", "Wool", "Denim", "Silk", "Cashmere", "Corduroy", "Flannel"),
        ("Shirt", "Jacket", "Dress", "Sweater", "Scarf", "Trousers", "Skirt", "Hoodie",
         "Blazer", "Cardigan"),
    ),
    (
        "footwear",
        ("Leather", "Suede", "Canvas", "Trail", "Running", "Hiking", "Platform", "Waterproof"),
        ("Boots", "Sneakers", "Loafers", "Sandals", "Slippers", "Brogues", "Clogs", "Trainers",
         "Mules", "Espadrilles"),
    ),
    (
        "books",
        ("Illustrated", "Annotated", "Pocket", "Hardcover", "Collected", "Unabridged",
         "Paperback", "Graphic"),
        ("Novel", "Atlas", "Cookbook", "Memoir", "Anthology", "Biography", "Field Guide",
         "Poetry Collection", "Thriller", "Almanac"),
    ),
    (
        "electronics",
        ("Wireless", "Bluetooth", "Smart", "Portable", "Noise-Cancelling", "USB-C", "Compact",
         "4K"),
        ("Headphones", "Speaker", "Charger", "Camera", "Keyboard", "Monitor", "Earbuds",
         "Power Bank", "Projector", "Router"),
    ),
    (
        "kitchen",
        ("Cast Iron", "Ceramic", "Stainless", "Copper", "Bamboo", "Nonstick", "Enamel", "Glass"),
        ("Skillet", "Teapot", "Knife Set", "Saucepan", "Cutting Board", "Mixing Bowl",
         "Dutch Oven", "Kettle", "Colander", "Grater"),
    ),
    (
        "home",
        ("Velvet", "Rattan", "Oak", "Marble", "Woven", "Jute", "Brass", "Walnut"),
        ("Cushion", "Lamp", "Rug", "Throw", "Mirror", "Vase", "Side Table", "Curtains",
         "Candle Holder", "Shelf"),
    ),
    (
        "beauty",
        ("Hydrating", "Rose", "Vitamin C", "Charcoal", "Aloe", "Lavender", "Argan", "Matte"),
        ("Serum", "Face Cream", "Lip Balm", "Cleanser", "Body Lotion", "Face Mask", "Shampoo",
         "Toner", "Eye Cream", "Hand Cream"),
    ),
    (
        "sports",
        ("Carbon", "Foldable", "Adjustable", "Ultralight", "Padded", "Grip", "Training", "Pro"),
        ("Yoga Mat", "Dumbbells", "Tennis Racket", "Bike Helmet", "Water Bottle", "Jump Rope",
         "Gym Bag", "Resistance Bands", "Football", "Foam Roller"),
    ),
    (
        "toys",
        ("Wooden", "Plush", "Magnetic", "Musical", "Remote-Control", "Glow-in-the-Dark",
         "Stacking", "Puzzle"),
        ("Robot", "Train Set", "Teddy Bear", "Blocks", "Dinosaur", "Kite", "Doll House",
         "Race Car", "Spinning Top", "Board Game"),
    ),
    (
        "garden",
        ("Terracotta", "Galvanized", "Solar", "Hanging", "Cedar", "Weatherproof", "Ergonomic",
         "Raised"),
        ("Planter", "Watering Can", "Trowel", "Bird Feeder", "Lantern", "Hose", "Pruners",
         "Seed Tray", "Bench", "Wind Chime"),
    ),
    (
        "music",
        ("Acoustic", "Electric", "Vinyl", "Studio", "Travel", "Maple", "Rosewood", "Analog"),
        ("Guitar", "Ukulele", "Record", "Microphone", "Drum Pad", "Synthesizer", "Harmonica",
         "Metronome", "Capo", "Cajon"),
    ),
    (
        "grocery",
        ("Organic", "Smoked", "Roasted", "Wildflower", "Sea Salt", "Stone-Ground", "Dark",
         "Spiced"),
        ("Coffee", "Honey", "Olive Oil", "Chocolate", "Granola", "Tea", "Almonds", "Pasta",
         "Mustard", "Jam"),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class SimulatedData:
    """What `Simulator.generate` returns.

    Attributes:
        log: the events in the canonical schema (sorted by user, then time), with an item
            side table (``item_id``, ``title``, ``category``, ``price``) and a user side table
            (``user_id``, ``segment``). Purchases carry the price in ``value``.
        truth: one row per view event, in the order the views appear in ``log.events``:
            ``user_id``, ``item_id``, ``timestamp``, ``session_id``, ``affinity``,
            ``successor`` (the item is a successor of the user's last click), ``followed``
            (the view was drawn from the last click's successors), the true probabilities
            ``p_click``, ``p_cart_given_click``, ``p_purchase_given_cart``, ``p_cart`` and
            ``p_purchase`` (the last two given the view alone), and the realised outcomes
            ``clicked``, ``carted``, ``purchased``.
        transitions: the designated successors: ``item_id``, ``successor_id``, ``rank``
            (0 = most likely) and ``probability`` (given that the view follows the item).
    """

    log: EventLog
    truth: pl.DataFrame
    transitions: pl.DataFrame


def _sigmoid(x: F64Array) -> F64Array:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def _softmax_rows(x: F64Array) -> F64Array:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True), dtype=np.float64)


def _neg_binomial(rng: np.random.Generator, mean: float, shape: float, size: int) -> IntArray:
    """``1 + NegBin`` draws with the given mean (>= 1) and gamma shape (over-dispersion)."""
    extra = mean - 1.0
    if extra <= 0:
        return np.ones(size, dtype=np.int64)
    lam = rng.gamma(shape, extra / shape, size=size)
    return np.asarray(1 + rng.poisson(lam), dtype=np.int64)


def _group_starts(group: IntArray) -> BoolArray:
    """True at the first row of each run of equal values (``group`` is sorted)."""
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return first


def _segmented_cumsum(increments: IntArray, first: BoolArray) -> IntArray:
    """Cumulative sum restarting at every ``first`` row (whose own increment is ignored)."""
    inc = increments.copy()
    inc[first] = 0
    total = np.cumsum(inc)
    start_rows = np.flatnonzero(first)
    run = np.cumsum(first) - 1  # which run each row belongs to
    return np.asarray(total - total[start_rows][run], dtype=np.int64)


def _as_rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _titles(categories: IntArray, n_categories: int, rng: np.random.Generator) -> list[str]:
    """Deterministic, mostly unique "<adjective> <modifier> <noun>" titles per item."""
    titles = [""] * len(categories)
    for c in range(n_categories):
        items = np.flatnonzero(categories == c)
        if not len(items):
            continue
        _, modifiers, nouns = _THEMES[c % len(_THEMES)]
        n_combos = len(_ADJECTIVES) * len(modifiers) * len(nouns)
        picks = rng.permutation(n_combos)
        for k, item in enumerate(items):
            combo = int(picks[k % n_combos])
            adj, rest = divmod(combo, len(modifiers) * len(nouns))
            mod, noun = divmod(rest, len(nouns))
            title = f"{_ADJECTIVES[adj]} {modifiers[mod]} {nouns[noun]}"
            titles[item] = title if k < n_combos else f"{title} {k // n_combos + 1}"
    return titles


def _category_names(n_categories: int) -> list[str]:
    names = []
    for c in range(n_categories):
        base = _THEMES[c % len(_THEMES)][0]
        names.append(base if c < len(_THEMES) else f"{base}-{c // len(_THEMES) + 1}")
    return names


class Simulator:
    """Seeded synthetic users, items and behaviour with known ground-truth probabilities.

    Args:
        config: the simulator's settings (sizes, seed and the generative model's knobs).

    After `generate`, the learned-state attributes (ending in ``_``) describe the world and
    every user's current state; `respond`, `next_item_probabilities` and
    `choice_probabilities` use them. User and item ids are the ints ``1..n_users`` and
    ``1..n_items``.

    Example:
        >>> sim = Simulator(SimulatorConfig(n_users=50, n_items=40, seed=1))
        >>> data = sim.generate()
        >>> out = sim.respond([1, 2], [3, 4], rng=0)
        >>> sorted(out)[:3]
        ['affinity', 'carted', 'clicked']
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()

    # -- world -----------------------------------------------------------------------------------
    def _build_items(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n, c, d = cfg.n_items, cfg.n_categories, cfg.latent_dim
        category = rng.permutation(np.arange(n) % c).astype(np.int64)
        centroids = rng.standard_normal((c, d))
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        vectors = centroids[category] + cfg.item_spread * rng.standard_normal((n, d)) / np.sqrt(d)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rank = rng.permutation(n) + 1
        log_median = rng.uniform(np.log(8.0), np.log(150.0), size=c)
        log_price = log_median[category] + 0.5 * rng.standard_normal(n)
        price = np.maximum(np.round(np.exp(log_price)), 1.0) - 0.01
        lp = np.log(price)
        # Series chains: items ordered by category (random within), successors = the next ones.
        order = np.lexsort((rng.random(n), category))
        n_succ = min(cfg.n_successors, n - 1)
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        steps = np.arange(1, n_succ + 1)
        successors = order[(position[:, None] + steps[None, :]) % n]
        weights = _SUCCESSOR_DECAY ** np.arange(n_succ)

        self.category_names_ = _category_names(c)
        self.item_ids_ = np.arange(1, n + 1, dtype=np.int64)
        self.item_category_ = category
        self.category_centroids_ = centroids
        self.item_vectors_ = vectors
        self.popularity_bias_ = -cfg.zipf_exponent * np.log(rank.astype(np.float64))
        self.item_quality_ = cfg.click_quality_sd * rng.standard_normal(n)
        self.item_price_ = price
        self.item_price_z_ = (lp - lp.mean()) / (lp.std() if lp.std() > 0 else 1.0)
        self.successors_ = np.asarray(successors, dtype=np.int64)  # (I, S) item indices
        self.successor_probs_ = weights / weights.sum()  # (S,)
        self.item_titles_ = _titles(category, c, rng)

    @staticmethod
    def segment_shares() -> F64Array:
        """Prior probability of each price segment (in the order of the user table's names)."""
        shares = np.array([s[1] for s in _SEGMENTS])
        return np.asarray(shares / shares.sum(), dtype=np.float64)

    @staticmethod
    def segment_sensitivities() -> F64Array:
        """Price sensitivity of each segment (multiplies the cart and purchase price penalty)."""
        return np.array([s[2] for s in _SEGMENTS], dtype=np.float64)

    @staticmethod
    def segment_names() -> list[str]:
        """Segment names, as in the log's user side table."""
        return [s[0] for s in _SEGMENTS]

    def _build_users(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n, c, d = cfg.n_users, cfg.n_categories, cfg.latent_dim
        shares = np.array([s[1] for s in _SEGMENTS])
        segment = rng.choice(len(_SEGMENTS), size=n, p=shares / shares.sum())
        self.user_ids_ = np.arange(1, n + 1, dtype=np.int64)
        self.user_segment_ = segment.astype(np.int64)
        self.price_sensitivity_ = np.array([s[2] for s in _SEGMENTS])[segment]
        self.personal_vectors_ = _PERSONAL_SCALE * rng.standard_normal((n, d)) / np.sqrt(d)
        self.category_logits_ = cfg.taste_concentration * rng.standard_normal((n, c))
        self.last_click_ = np.full(n, -1, dtype=np.int64)

    def _tastes(self, category_logits: F64Array, users: IntArray) -> F64Array:
        """Taste vectors ``(B, D)`` from category preference logits ``(B, C)``."""
        return self.taste_vectors(category_logits, self.personal_vectors_[users])

    def taste_vectors(self, category_logits: F64Array, personal_vectors: F64Array) -> F64Array:
        """Taste vectors ``(B, D)`` from category logits ``(B, C)`` and personal vectors ``(B, D)``.

        The model's formula (the preference-weighted mix of category centroids plus the
        personal vector), for any latent states, e.g. the particles of
        `recpilot.behaviour.oracle`. Needs the items (`generate`).
        """
        weights = _softmax_rows(category_logits)
        return np.asarray(
            _TASTE_SCALE * weights @ self.category_centroids_ + personal_vectors,
            dtype=np.float64,
        )

    def _view_logits(self, tastes: F64Array) -> F64Array:
        """Free-choice view logits ``(B, I)`` for taste vectors ``(B, D)``."""
        return np.asarray(
            self.popularity_bias_[None, :]
            + self.config.taste_weight * (tastes @ self.item_vectors_.T),
            dtype=np.float64,
        )

    def _funnel_given(
        self, affinity: F64Array, items: IntArray, users: IntArray, successor: BoolArray
    ) -> tuple[F64Array, F64Array, F64Array]:
        """``p_click``, ``p_cart | click``, ``p_purchase | cart`` for (user, item) pairs."""
        return self.funnel_probabilities(affinity, items, self.price_sensitivity_[users], successor)

    def funnel_probabilities(
        self,
        affinity: F64Array,
        items: IntArray,
        sensitivity: F64Array,
        successor: BoolArray | bool,
    ) -> tuple[F64Array, F64Array, F64Array]:
        """The model's ``p_click``, ``p_cart | click``, ``p_purchase | cart`` (broadcasting).

        Args:
            affinity: user-item affinities ``taste · item_vector``.
            items: item indices (0-based), broadcast against ``affinity``.
            sensitivity: price sensitivities of the users' segments (`segment_sensitivities`).
            successor: whether each item is a successor of the user's last click.
        """
        cfg = self.config
        price = self.item_price_z_[items] * sensitivity
        p_click = _sigmoid(
            cfg.click_bias
            + cfg.click_affinity * affinity
            + cfg.click_successor * successor
            + self.item_quality_[items]
        )
        p_cart = _sigmoid(cfg.cart_bias + cfg.cart_affinity * affinity - cfg.cart_price * price)
        p_purchase = _sigmoid(
            cfg.purchase_bias + cfg.purchase_affinity * affinity - cfg.purchase_price * price
        )
        return p_click, p_cart, p_purchase

    def _is_successor(self, last_click: IntArray, items: IntArray) -> BoolArray:
        has = last_click >= 0
        succ = self.successors_[np.maximum(last_click, 0)]
        return np.asarray(has & (succ == items[:, None]).any(axis=1), dtype=bool)

    def _sample_free_views(
        self, tastes: F64Array, view_session: IntArray, rng: np.random.Generator
    ) -> IntArray:
        """One free-choice item per view, from its session's softmax (chunked inverse CDF)."""
        n_items = self.config.n_items
        out = np.empty(len(view_session), dtype=np.int64)
        u = rng.random(len(view_session))
        bounds = np.searchsorted(view_session, np.arange(len(tastes) + 1))
        rows = max(1, (1 << 22) // n_items)
        for a in range(0, len(tastes), rows):
            b = min(a + rows, len(tastes))
            logits = self._view_logits(tastes[a:b])
            cdf = np.cumsum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
            cdf /= cdf[:, -1:]
            cdf += np.arange(b - a, dtype=np.float64)[:, None]
            lo, hi = bounds[a], bounds[b]
            r = view_session[lo:hi] - a
            idx = np.searchsorted(cdf.ravel(), r + u[lo:hi], side="right") - r * n_items
            out[lo:hi] = np.clip(idx, 0, n_items - 1)
        return out

    # -- generation ------------------------------------------------------------------------------
    def generate(self) -> SimulatedData:
        """Build the world from the seed and simulate every user's sessions.

        Calling it again restarts from the seed and returns identical data.

        Returns:
            The event log, the per-view ground truth and the successor table.
        """
        t0 = time.perf_counter()
        cfg = self.config
        item_rng, user_rng, session_rng, event_rng, clock_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)
        )
        self._build_items(item_rng)
        self._build_users(user_rng)
        n_users, n_cat = cfg.n_users, cfg.n_categories

        # Sessions (sorted by user, then order) and their drifting tastes.
        n_sessions = _neg_binomial(session_rng, cfg.sessions_per_user, _SESSIONS_SHAPE, n_users)
        session_user = np.repeat(np.arange(n_users), n_sessions)
        session_first = _group_starts(session_user)
        session_k = np.arange(len(session_user)) - np.flatnonzero(session_first).repeat(n_sessions)
        steps = cfg.taste_drift * session_rng.standard_normal((len(session_user), n_cat))
        steps[session_first] = 0.0
        walk = np.cumsum(steps, axis=0)
        walk -= walk[np.flatnonzero(session_first)].repeat(n_sessions, axis=0)
        session_logits = self.category_logits_[session_user] + walk
        session_taste = self._tastes(session_logits, session_user)
        session_len = _neg_binomial(
            session_rng, cfg.session_length, _LENGTH_SHAPE, len(session_user)
        )

        # Views (sorted by user, session, position): free choices and coins drawn up front.
        view_session = np.repeat(np.arange(len(session_user)), session_len)
        view_user = session_user[view_session]
        n_views = len(view_session)
        free_item = self._sample_free_views(session_taste, view_session, event_rng)
        follow_coin = event_rng.random(n_views) < cfg.follow_probability
        slot = event_rng.choice(len(self.successor_probs_), size=n_views, p=self.successor_probs_)
        u_click, u_cart, u_purchase = event_rng.random((3, n_views))

        # Sequential part: the last click steers the next view, one position at a time.
        counts = np.bincount(view_user, minlength=n_users)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        by_length = np.argsort(-counts, kind="stable")
        sorted_counts = counts[by_length]
        item = np.empty(n_views, dtype=np.int64)
        followed = np.zeros(n_views, dtype=bool)
        successor = np.zeros(n_views, dtype=bool)
        affinity = np.empty(n_views)
        p_click = np.empty(n_views)
        last_click = self.last_click_
        for p in range(int(counts.max(initial=0))):
            active = by_length[: np.searchsorted(-sorted_counts, -p, side="left")]
            j = ptr[active] + p
            last = last_click[active]
            follow = follow_coin[j] & (last >= 0)
            chosen = free_item[j]
            chosen[follow] = self.successors_[last[follow], slot[j[follow]]]
            succ = self._is_successor(last, chosen)
            aff = np.einsum("nd,nd->n", session_taste[view_session[j]], self.item_vectors_[chosen])
            pc, _, _ = self._funnel_given(aff, chosen, active, succ)
            clicked_now = u_click[j] < pc
            last_click[active[clicked_now]] = chosen[clicked_now]
            item[j] = chosen
            followed[j] = follow
            successor[j] = succ
            affinity[j] = aff
            p_click[j] = pc
        _, p_cart_given, p_purchase_given = self._funnel_given(affinity, item, view_user, successor)
        clicked = u_click < p_click
        carted = clicked & (u_cart < p_cart_given)
        purchased = carted & (u_purchase < p_purchase_given)

        # Current state: each user's last session taste.
        last_session = np.flatnonzero(np.r_[session_first[1:], True])
        self.category_logits_ = session_logits[last_session]
        self.taste_ = session_taste[last_session]

        timestamps = self._clock(
            clock_rng, view_session, session_user, clicked, carted, purchased, n_sessions
        )
        data = self._assemble(
            view_user=view_user,
            view_session_k=session_k[view_session],
            item=item,
            timestamps=timestamps,
            truth_columns={
                "affinity": affinity,
                "successor": successor,
                "followed": followed,
                "p_click": p_click,
                "p_cart_given_click": p_cart_given,
                "p_purchase_given_cart": p_purchase_given,
                "p_cart": p_click * p_cart_given,
                "p_purchase": p_click * p_cart_given * p_purchase_given,
                "clicked": clicked,
                "carted": carted,
                "purchased": purchased,
            },
        )
        logger.info(
            "simulated %d users, %d items: %d sessions, %d views, %d clicks, %d carts, "
            "%d purchases in %.2fs",
            n_users,
            cfg.n_items,
            len(session_user),
            n_views,
            int(clicked.sum()),
            int(carted.sum()),
            int(purchased.sum()),
            time.perf_counter() - t0,
        )
        return data

    def _clock(
        self,
        rng: np.random.Generator,
        view_session: IntArray,
        session_user: IntArray,
        clicked: BoolArray,
        carted: BoolArray,
        purchased: BoolArray,
        n_sessions: IntArray,
    ) -> IntArray:
        """``(4, V)`` ms timestamps of each view and of its click, cart and purchase."""
        cfg = self.config
        n = len(view_session)

        def lognormal_ms(median_s: float, sigma: float, floor_s: float) -> IntArray:
            draws = rng.lognormal(np.log(median_s * 1000.0), sigma, size=n)
            return np.asarray(floor_s * 1000 + draws, dtype=np.int64)

        click_delay = lognormal_ms(8.0, 0.6, 1.0)
        cart_delay = lognormal_ms(25.0, 0.7, 2.0)
        purchase_delay = lognormal_ms(90.0, 0.7, 5.0)
        # Log-normal with sigma 1 has mean = median * e^0.5; the 1 s floor is part of the mean.
        view_gap = lognormal_ms(max(cfg.mean_view_gap_seconds - 1.0, 0.1) / np.exp(0.5), 1.0, 1.0)
        funnel = clicked * click_delay + carted * cart_delay + purchased * purchase_delay

        view_first = _group_starts(view_session)
        increments = np.zeros(n, dtype=np.int64)
        increments[1:] = funnel[:-1] + view_gap[1:]
        offset = _segmented_cumsum(increments, view_first)
        last_view = np.flatnonzero(np.r_[view_first[1:], True])
        duration = offset[last_view] + funnel[last_view]

        gap_floor = 600_000.0  # 10 minutes
        mean_gap = max(cfg.mean_session_gap_hours * 3_600_000.0 - gap_floor, 1.0)
        n_s = len(session_user)
        session_gap = (gap_floor + rng.exponential(mean_gap, size=n_s)).astype(np.int64)
        session_first = _group_starts(session_user)
        s_inc = np.zeros(n_s, dtype=np.int64)
        s_inc[1:] = duration[:-1] + session_gap[1:]
        user_start = cfg.start_timestamp_ms + rng.integers(
            0, _START_SPREAD_DAYS * 86_400_000, size=cfg.n_users
        )
        session_start = user_start[session_user] + _segmented_cumsum(s_inc, session_first)

        view_ts = session_start[view_session] + offset
        click_ts = view_ts + click_delay
        cart_ts = click_ts + cart_delay
        purchase_ts = cart_ts + purchase_delay
        return np.stack([view_ts, click_ts, cart_ts, purchase_ts])

    def _assemble(
        self,
        *,
        view_user: IntArray,
        view_session_k: IntArray,
        item: IntArray,
        timestamps: IntArray,
        truth_columns: dict[str, np.ndarray],
    ) -> SimulatedData:
        cfg = self.config
        n_views = len(item)
        masks = [
            np.ones(n_views, dtype=bool),
            truth_columns["clicked"],
            truth_columns["carted"],
            truth_columns["purchased"],
        ]
        rows = np.concatenate([np.flatnonzero(m) for m in masks])
        step = np.concatenate(
            [np.full(int(m.sum()), k, dtype=np.int64) for k, m in enumerate(masks)]
        )
        ts = np.concatenate([timestamps[k][m] for k, m in enumerate(masks)])
        # Funnel events of a user never tie in time (every delay is >= 1 s); step breaks ties.
        order = np.lexsort((step, ts, view_user[rows]))
        rows, step, ts = rows[order], step[order], ts[order]
        value = np.where(step == 3, self.item_price_[item[rows]], np.nan)
        session_ids = pl.format("{}-{}", pl.col("user_id"), pl.col("_k"))
        events = (
            pl.DataFrame(
                {
                    "user_id": pl.Series(view_user[rows] + 1, dtype=pl.Int64),
                    "item_id": pl.Series(item[rows] + 1, dtype=pl.Int64),
                    "timestamp": pl.Series(ts, dtype=pl.Int64),
                    "event_type": pl.Series([str(s) for s in _FUNNEL_STEPS]).gather(step),
                    "value": pl.Series(value, dtype=pl.Float64).fill_nan(None),
                    "_k": pl.Series(view_session_k[rows], dtype=pl.Int64),
                }
            )
            .with_columns(session_ids.alias("session_id"))
            .drop("_k")
        )
        items = pl.DataFrame(
            {
                "item_id": pl.Series(self.item_ids_, dtype=pl.Int64),
                "title": pl.Series(self.item_titles_, dtype=pl.String),
                "category": pl.Series(self.category_names_, dtype=pl.String).gather(
                    self.item_category_
                ),
                "price": pl.Series(self.item_price_, dtype=pl.Float64),
            }
        )
        users = pl.DataFrame(
            {
                "user_id": pl.Series(self.user_ids_, dtype=pl.Int64),
                "segment": pl.Series([s[0] for s in _SEGMENTS], dtype=pl.String).gather(
                    self.user_segment_
                ),
            }
        )
        log = EventLog(events, items=items, users=users, source=f"simulator(seed={cfg.seed})")
        view_ts = timestamps[0]
        truth = pl.DataFrame(
            {
                "user_id": pl.Series(view_user + 1, dtype=pl.Int64),
                "item_id": pl.Series(item + 1, dtype=pl.Int64),
                "timestamp": pl.Series(view_ts, dtype=pl.Int64),
                "_k": pl.Series(view_session_k, dtype=pl.Int64),
                **{name: pl.Series(col) for name, col in truth_columns.items()},
            }
        ).with_columns(session_ids.alias("session_id"))
        truth = truth.select(
            "user_id", "item_id", "timestamp", "session_id", *truth_columns.keys()
        ).sort(["user_id", "timestamp"], maintain_order=True)
        n_succ = self.successors_.shape[1]
        transitions = pl.DataFrame(
            {
                "item_id": pl.Series(np.repeat(self.item_ids_, n_succ), dtype=pl.Int64),
                "successor_id": pl.Series(self.successors_.ravel() + 1, dtype=pl.Int64),
                "rank": pl.Series(np.tile(np.arange(n_succ), cfg.n_items), dtype=pl.Int64),
                "probability": pl.Series(np.tile(self.successor_probs_, cfg.n_items)),
            }
        )
        return SimulatedData(log=log, truth=truth, transitions=transitions)

    # -- responses to shown items ----------------------------------------------------------------
    def _check_generated(self) -> None:
        if not hasattr(self, "taste_"):
            raise NotFittedError(
                "this Simulator has no users yet: call generate() before respond(), "
                "next_item_probabilities() or choice_probabilities()"
            )

    def _index(self, ids: IdsLike | int, n: int, what: str) -> IntArray:
        arr = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        bad = arr[(arr < 1) | (arr > n)]
        if len(bad):
            raise UnknownIdError(
                f"{what} ids {bad[:3].tolist()} are not in the simulator (expected 1..{n})"
            )
        return arr - 1

    def respond(
        self,
        user_ids: IdsLike,
        item_ids: IdsLike,
        rng: RngLike = None,
        *,
        update_state: bool = False,
    ) -> dict[str, np.ndarray]:
        """Simulate each user's funnel for an item shown to them, with the current tastes.

        Args:
            user_ids: ``(N,)`` user ids (repeat a user to show several items).
            item_ids: ``(N,)`` item ids, pairwise with ``user_ids``.
            rng: a generator or a seed; the same seed gives the same outcomes.
            update_state: record each user's last clicked item (in the given order) so that
                later calls see the successor effect of these clicks.

        Returns:
            ``(N,)`` arrays: ``affinity``, ``successor``, ``p_click``, ``p_cart_given_click``,
            ``p_purchase_given_cart``, ``p_cart`` and ``p_purchase`` (given the show alone),
            and the sampled ``clicked``, ``carted``, ``purchased``.

        Raises:
            NotFittedError: before `generate`.
            UnknownIdError: for ids outside ``1..n``.
            ValueError: if the two id arrays differ in length.
        """
        self._check_generated()
        users = self._index(user_ids, self.config.n_users, "user")
        items = self._index(item_ids, self.config.n_items, "item")
        if len(users) != len(items):
            raise ValueError(
                f"respond() needs one item per user: got {len(users)} users, {len(items)} items"
            )
        gen = _as_rng(rng)
        affinity = np.einsum("nd,nd->n", self.taste_[users], self.item_vectors_[items])
        successor = self._is_successor(self.last_click_[users], items)
        p_click, p_cart_given, p_purchase_given = self._funnel_given(
            affinity, items, users, successor
        )
        u = gen.random((3, len(users)))
        clicked = u[0] < p_click
        carted = clicked & (u[1] < p_cart_given)
        purchased = carted & (u[2] < p_purchase_given)
        if update_state and clicked.any():
            # The last click of each user in the given order wins.
            rev_users = users[clicked][::-1]
            rev_items = items[clicked][::-1]
            uniq, first = np.unique(rev_users, return_index=True)
            self.last_click_[uniq] = rev_items[first]
        return {
            "affinity": affinity,
            "successor": successor,
            "p_click": p_click,
            "p_cart_given_click": p_cart_given,
            "p_purchase_given_cart": p_purchase_given,
            "p_cart": p_click * p_cart_given,
            "p_purchase": p_click * p_cart_given * p_purchase_given,
            "clicked": clicked,
            "carted": carted,
            "purchased": purchased,
        }

    def next_item_probabilities(self, user_ids: IdsLike) -> F64Array:
        """The true distribution of each user's next view over the whole catalogue.

        Args:
            user_ids: ``(B,)`` user ids.

        Returns:
            ``(B, I)`` probabilities; column ``j`` is item id ``j + 1``; rows sum to 1.
        """
        self._check_generated()
        users = self._index(user_ids, self.config.n_users, "user")
        free = _softmax_rows(self._view_logits(self.taste_[users]))
        last = self.last_click_[users]
        has = last >= 0
        follow = self.config.follow_probability * has  # (B,)
        probs = free * (1.0 - follow)[:, None]
        rows = np.flatnonzero(has)
        for k, weight in enumerate(self.successor_probs_):
            np.add.at(probs, (rows, self.successors_[last[rows], k]), follow[rows] * weight)
        return probs

    def choice_probabilities(self, user_id: int, candidate_item_ids: IdsLike) -> F64Array:
        """Which candidate the user's next view goes to, given that it is one of them.

        Args:
            user_id: one user id.
            candidate_item_ids: ``(n,)`` distinct item ids.

        Returns:
            ``(n,)`` probabilities summing to 1 (the next-view distribution restricted to the
            candidates and renormalised).
        """
        items = self._index(candidate_item_ids, self.config.n_items, "item")
        probs = self.next_item_probabilities([user_id])[0, items]
        return np.asarray(probs / probs.sum(), dtype=np.float64)

    def advance(self, rng: RngLike = None) -> None:
        """Let every user's taste drift by one session step (the random walk of the model)."""
        self._check_generated()
        gen = _as_rng(rng)
        self.category_logits_ = self.category_logits_ + self.config.taste_drift * (
            gen.standard_normal(self.category_logits_.shape)
        )
        self.taste_ = self._tastes(self.category_logits_, np.arange(self.config.n_users))


# -- Bayes-optimal reference metrics ------------------------------------------------------------
def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve by the Mann-Whitney rank formula (ties get average ranks).

    Returns NaN when ``labels`` holds a single class.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg_rank = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: npt.ArrayLike, probs: npt.ArrayLike, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[eps, 1 - eps]``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


_OUTCOMES = {"click": ("p_click", "clicked"), "cart": ("p_cart", "carted")}
_OUTCOMES["purchase"] = ("p_purchase", "purchased")


def bayes_optimal_metrics(
    truth: pl.DataFrame, event: Literal["click", "cart", "purchase"] = "click"
) -> dict[str, float]:
    """AUC and log-loss of the true probabilities against the realised outcomes of views.

    No model can beat these in expectation on the same views: they are the reference for a
    behaviour model's ``P(event | view)``.

    Args:
        truth: `SimulatedData.truth` (or a subset of its rows).
        event: which outcome: ``click``, ``cart`` or ``purchase`` (each given the view).

    Returns:
        ``auc``, ``log_loss``, ``positive_rate``, ``mean_probability`` and ``n`` (views).
    """
    if event not in _OUTCOMES:
        raise ValueError(f"event must be one of {sorted(_OUTCOMES)}, got {event!r}")
    p_col, y_col = _OUTCOMES[event]
    p = truth[p_col].to_numpy()
    y = truth[y_col].to_numpy()
    return {
        "auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "positive_rate": float(np.mean(y)) if len(y) else float("nan"),
        "mean_probability": float(np.mean(p)) if len(p) else float("nan"),
        "n": float(len(y)),
    }
