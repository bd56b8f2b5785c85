"""The Bayes-optimal behaviour predictor given the observable history (a particle filter).

The simulator (`recpilot.data.simulator`) knows every view's *true* probabilities, but those
depend on latent user state no model can observe: the category-preference logits after their
per-session random walk, and the personal taste vector. Scoring views with them is a
clairvoyant oracle. The best any model can do from the log is the posterior predictive

    P(behaviour | view of item i, everything observable before it)
        = E[ p_behaviour(state, i) | observable history, this view ]

where the expectation runs over the posterior of the user's latent state. This module
computes it with the simulator's own generative model, one sequential-importance-resampling
particle filter per user, vectorised over particles with numpy.

**What is latent, what is known.**

- *Per-user latent state* (integrated out): the category preference logits ``L`` (prior
  ``N(0, taste_concentration^2)`` per category, a ``N(0, taste_drift^2)`` step at every
  session after the first), the personal vector ``v`` (prior ``N(0, (0.5 / sqrt(D))^2)`` per
  dimension) and, with ``known_segment=False``, the price segment (prior: the segment
  shares). By default the segment is *known*: the simulator publishes it in the log's user
  side table, and the behaviour models read it as a feature.
- *Global parameters* (used as known): the simulator's config (funnel coefficients, follow
  probability, drift), category centroids, item latent vectors, popularity biases, click
  qualities, standardised log prices and the successor chains. They are not per-user state:
  a model sees the same items over and over and could learn them from enough data, so the
  predictor is Bayes-optimal *given the world's parameters*, which is slightly optimistic
  for a model that must also estimate them from a finite log.
- *Observations per user*, in time order: every view's item, whether it was clicked, carted
  and purchased (the log's events), and the session it belongs to (the log's
  ``session_id``; sessions are also separated by gaps of >= 10 minutes). Timestamps, session
  counts and lengths are drawn independently of the latent state in the simulator, so they
  carry no further information and do not enter the likelihood.

**Likelihood of one view** (what the particle weights multiply by): the probability of the
viewed item under the view model, ``(1 - f) * softmax(popularity + taste_weight * taste ·
x)[i] + f * successor_weight(i | last click)`` with ``f = follow_probability`` when the user
has clicked before and 0 otherwise (the follow coin is not observed, so both branches are
summed), times the funnel: ``p_click`` or ``1 - p_click``; if clicked, ``p_cart | click`` or its
complement; if carted, ``p_purchase | cart`` or its complement. The probabilities come from
the simulator's own code (`Simulator.taste_vectors`, `Simulator._view_logits`,
`Simulator.funnel_probabilities`, `Simulator._is_successor`).

**Prediction for a view** is made after weighting the particles by that view's item
likelihood (the candidate item is observable: a user who views an item reveals some taste)
and before its funnel outcome is seen; ``p_cart`` and ``p_purchase`` are given the view
alone, like the simulator's truth columns.

**Approximations.**

- Monte-Carlo error of a finite particle set (check it by changing ``n_particles``).
- Static components (``v``, and ``L`` within a session or with zero drift) suffer from
  particle degeneracy after repeated resampling. Resampling (systematic, when the effective
  sample size drops below ``ess_threshold * n_particles``) duplicates particles; at the next
  session start the duplicates are separated by the Liu-West shrinkage kernel on the
  continuous state, ``a * x + (1 - a) * mean + N(0, h^2 * cov)`` with ``a = (3 * discount -
  1) / (2 * discount)`` and ``h^2 = 1 - a^2`` (weighted mean and covariance), before the
  session's drift step. The kernel keeps the cloud's mean and covariance but is not an exact
  move of the posterior (it treats it as locally Gaussian), and duplicates stay duplicates
  within a session; so the filter is a close approximation of the Bayes predictor, not the
  exact one. Any error makes the
  predictor worse than the true Bayes predictor in expectation, so its scores are (up to
  Monte-Carlo noise) a lower bound on what is attainable from the observable history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
from threadpoolctl import threadpool_limits

from recpilot.data.simulator import _PERSONAL_SCALE, Simulator

logger = logging.getLogger(__name__)

F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ParticleFilterConfig:
    """Settings of the observable-history Bayes predictor.

    Attributes:
        n_particles: particles per user.
        ess_threshold: resample when the effective sample size falls below this share of
            the particles.
        discount: Liu-West discount in (0, 1]; 1 switches the shrinkage kernel off (plain
            resampling).
        known_segment: condition on the user's price segment (published in the log's user
            table) rather than integrate it out under its prior.
        learn: update on the history; False gives the prior predictive (no history at all,
            not even the current view's item), a reference for tests.
        seed: seed of the particle draws (per user: the user id is mixed in).
    """

    n_particles: int = 1000
    ess_threshold: float = 0.5
    discount: float = 0.98
    known_segment: bool = True
    learn: bool = True
    seed: int = 0


def _logsumexp_rows(x: F64Array) -> F64Array:
    m = x.max(axis=1)
    return np.asarray(m + np.log(np.exp(x - m[:, None]).sum(axis=1)), dtype=np.float64)


def _systematic_resample(weights: F64Array, rng: np.random.Generator) -> IntArray:
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.asarray(np.searchsorted(cdf, positions, side="left"), dtype=np.int64)


def _liu_west(
    state: F64Array, weights: F64Array, discount: float, rng: np.random.Generator
) -> F64Array:
    """Shrink-and-jitter particles ``(P, K)`` with weights (Liu and West, 2001).

    ``a * x + (1 - a) * mean + N(0, h^2 * cov)`` keeps the weighted mean and covariance of
    the cloud (``a^2 + h^2 = 1``) while separating duplicated particles.
    """
    if discount >= 1.0:
        return state
    a = (3.0 * discount - 1.0) / (2.0 * discount)
    h2 = 1.0 - a * a
    mean = weights @ state
    centred = state - mean
    cov = (centred * weights[:, None]).T @ centred
    cov += 1e-12 * np.eye(state.shape[1])
    chol = np.linalg.cholesky(cov)
    noise = rng.standard_normal(state.shape) @ chol.T
    return np.asarray(a * state + (1.0 - a) * mean + np.sqrt(h2) * noise, dtype=np.float64)


class _UserFilter:
    """One user's particle cloud: category logits, personal vectors, segments, log-weights."""

    def __init__(
        self, sim: Simulator, segment: int, cfg: ParticleFilterConfig, rng: np.random.Generator
    ) -> None:
        sc = sim.config
        p, c, d = cfg.n_particles, sc.n_categories, sc.latent_dim
        self.sim, self.cfg, self.rng = sim, cfg, rng
        self.n_categories = c
        self.logits = sc.taste_concentration * rng.standard_normal((p, c))
        self.personal = _PERSONAL_SCALE * rng.standard_normal((p, d)) / np.sqrt(d)
        if cfg.known_segment:
            self.segment = np.full(p, segment, dtype=np.int64)
        else:
            self.segment = rng.choice(len(sim.segment_shares()), size=p, p=sim.segment_shares())
        self.sensitivity = sim.segment_sensitivities()[self.segment]
        self.log_w = np.zeros(p)
        self.last_click = -1
        self.session: str | None = None
        self.resampled = False
        self.taste = np.empty((p, d))
        self.free_log_probs = np.empty((p, sc.n_items))

    def _refresh_session_state(self) -> None:
        self.taste = self.sim.taste_vectors(self.logits, self.personal)
        logits = self.sim._view_logits(self.taste)
        self.free_log_probs = logits - _logsumexp_rows(logits)[:, None]

    def start_session(self, session: str) -> None:
        """Rejuvenate duplicated particles (Liu-West), then take the session's drift step."""
        first = self.session is None
        self.session = session
        if self.resampled:
            state = np.concatenate([self.logits, self.personal], axis=1)
            state = _liu_west(state, self._weights(), self.cfg.discount, self.rng)
            self.logits = state[:, : self.n_categories]
            self.personal = state[:, self.n_categories :]
            self.resampled = False
        if not first and self.sim.config.taste_drift > 0:
            self.logits = self.logits + self.sim.config.taste_drift * self.rng.standard_normal(
                self.logits.shape
            )
        self._refresh_session_state()

    def _weights(self) -> F64Array:
        w = np.exp(self.log_w - self.log_w.max())
        return np.asarray(w / w.sum(), dtype=np.float64)

    def step(self, item: int, clicked: bool, carted: bool, purchased: bool) -> tuple[float, ...]:
        """Weight by the view of ``item``, predict its funnel, then weight by the outcome."""
        sim, learn = self.sim, self.cfg.learn
        items = np.array([item], dtype=np.int64)
        successor = bool(sim._is_successor(np.array([self.last_click]), items)[0])
        if learn:
            follow = sim.config.follow_probability if self.last_click >= 0 else 0.0
            view_lik = (1.0 - follow) * np.exp(self.free_log_probs[:, item])
            if follow > 0:
                succ = sim.successors_[self.last_click]
                view_lik = view_lik + follow * float(sim.successor_probs_[succ == item].sum())
            self.log_w += np.log(np.maximum(view_lik, 1e-300))
        affinity = self.taste @ sim.item_vectors_[item]
        p_click, p_cart_g, p_pur_g = sim.funnel_probabilities(
            affinity, items, self.sensitivity, successor
        )
        w = self._weights()
        p_cart = p_click * p_cart_g
        prediction = (float(w @ p_click), float(w @ p_cart), float(w @ (p_cart * p_pur_g)))
        if learn:
            lik = np.where(clicked, p_click, 1.0 - p_click)
            if clicked:
                lik = lik * np.where(carted, p_cart_g, 1.0 - p_cart_g)
                if carted:
                    lik = lik * np.where(purchased, p_pur_g, 1.0 - p_pur_g)
            self.log_w += np.log(np.maximum(lik, 1e-300))
            self._maybe_resample()
        if clicked:
            self.last_click = item
        return prediction

    def _maybe_resample(self) -> None:
        """Systematic resampling by duplication (the session's cached tastes and view
        log-probabilities are indexed, not recomputed); duplicates are separated by the
        Liu-West kernel at the next session start."""
        w = self._weights()
        ess = 1.0 / float(w @ w)
        if ess >= self.cfg.ess_threshold * len(w):
            return
        idx = _systematic_resample(w, self.rng)
        self.logits = self.logits[idx]
        self.personal = self.personal[idx]
        self.segment = self.segment[idx]
        self.sensitivity = self.sensitivity[idx]
        self.taste = self.taste[idx]
        self.free_log_probs = self.free_log_probs[idx]
        self.log_w = np.zeros(len(w))
        self.resampled = True


def observable_bayes_predictions(
    sim: Simulator,
    truth: pl.DataFrame,
    config: ParticleFilterConfig | None = None,
    *,
    users: Iterable[int] | None = None,
) -> pl.DataFrame:
    """Posterior-predictive funnel probabilities of every view, given the observable history.

    Args:
        sim: the simulator that generated ``truth`` (after `Simulator.generate`): its global
            parameters define the model.
        truth: `SimulatedData.truth`; only observable columns are read (``user_id``,
            ``item_id``, ``timestamp``, ``session_id``, ``clicked``, ``carted``,
            ``purchased``, which the event log holds too).
        config: particle-filter settings.
        users: user ids to filter (default: all); each user's whole history is filtered.

    Returns:
        One row per view of the selected users, sorted by user and time: ``user_id``,
        ``item_id``, ``timestamp``, ``session_id`` and the predictions ``p_click``, ``p_cart``,
        ``p_purchase`` (each given the view), the columns `simulator_truth` joins on.
    """
    cfg = config if config is not None else ParticleFilterConfig()
    frame = truth.select(
        "user_id", "item_id", "timestamp", "session_id", "clicked", "carted", "purchased"
    )
    if users is not None:
        frame = frame.filter(pl.col("user_id").is_in(list(users)))
    frame = frame.sort(["user_id", "timestamp"], maintain_order=True)
    user = frame["user_id"].to_numpy()
    item = frame["item_id"].to_numpy() - 1
    session = frame["session_id"].to_list()
    clicked = frame["clicked"].to_numpy()
    carted = frame["carted"].to_numpy()
    purchased = frame["purchased"].to_numpy()
    out = np.empty((len(frame), 3))
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else np.array([])
    ends = np.r_[starts[1:], len(user)].astype(np.int64)
    t0 = time.perf_counter()
    # Small matrix products: BLAS threads only contend (and slow down ~10x on a busy machine).
    with threadpool_limits(limits=1, user_api="blas"):
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            uid = int(user[a])
            rng = np.random.default_rng([cfg.seed, uid])
            filt = _UserFilter(sim, int(sim.user_segment_[uid - 1]), cfg, rng)
            for j in range(a, b):
                if session[j] != filt.session:
                    filt.start_session(session[j])
                out[j] = filt.step(
                    int(item[j]), bool(clicked[j]), bool(carted[j]), bool(purchased[j])
                )
    logger.info(
        "observable-history Bayes: %d users, %d views, %d particles in %.1fs",
        len(starts),
        len(frame),
        cfg.n_particles,
        time.perf_counter() - t0,
    )
    return frame.select("user_id", "item_id", "timestamp", "session_id").with_columns(
        pl.Series("p_click", out[:, 0]),
        pl.Series("p_cart", out[:, 1]),
        pl.Series("p_purchase", out[:, 2]),
    )
