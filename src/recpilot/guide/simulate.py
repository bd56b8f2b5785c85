"""Closed-loop simulation: policies serve simulated users who respond with ground-truth
click probabilities, and the model learns from what each policy showed.

`run_closed_loop`: the simulator generates a shop's history; EASE is fitted on its clicks;
then every round a sample of users is each shown ``k`` items chosen by the policy over the
model's scores, the simulator answers (`Simulator.respond`, with the true click
probabilities), clicks join the users' histories and the training data (the model is refitted
every ``refit_every`` rounds, so a policy's own clicks shape its next model: the feedback
loop), the Thompson-sampling posteriors are updated, and tastes drift one step
(`Simulator.advance`). Per round: expected CTR (mean true click probability of the shown
items), realised clicks per list, intra-list diversity over the simulator's true item vectors,
long-tail exposure and the items shown.

`off_policy_check`: lists logged by an ε-greedy policy (with propensities) are used to
estimate each deterministic target policy's clicks per list by IPS and SNIPS, next to the
true value from the simulator's click probabilities.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recpilot.config import SimulatorConfig, StrictModel
from recpilot.data.schema import EventType
from recpilot.data.simulator import Simulator
from recpilot.guide.ope import ips, snips
from recpilot.guide.policy import Pipeline, PolicyConfig
from recpilot.guide.similarity import EmbeddingSimilarity, cooccurrence_vectors
from recpilot.guide.stages import EXPLORING, BanditState, Exploration, ItemSpace, SeenFilter
from recpilot.guide.steering import exposure, long_tail_mask
from recpilot.models.ease import ease_weights
from recpilot.progress import progress
from recpilot.types import IntArray

logger = logging.getLogger(__name__)


class ClosedLoopConfig(StrictModel):
    """Settings of the closed loop."""

    rounds: int = Field(30, ge=1)
    users_per_round: int = Field(200, ge=1)
    k: int = Field(10, ge=1)
    refit_every: int = Field(5, ge=1, description="rounds between refits of the model")
    l2: float = Field(50.0, gt=0, description="EASE regularisation")
    head_share: float = Field(0.8, gt=0, lt=1, description="long tail: outside this head")
    window: int = Field(5, ge=1, description="rounds averaged for the first/last summaries")
    seed: int = 0


@dataclass(frozen=True)
class RoundStats:
    """What one round showed and what came of it."""

    round: int
    ctr: float  # mean true click probability of the shown items
    clicks_per_list: float
    ild: float
    tail_exposure: float
    distinct_shown: int


@dataclass
class ClosedLoopResult:
    """Per-round statistics and a summary of one policy's run."""

    rounds: list[RoundStats]
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rounds": [asdict(r) for r in self.rounds], "summary": self.summary}


class _World:
    """The simulator, the users' click histories and the EASE model over them."""

    def __init__(self, sim_config: SimulatorConfig, loop: ClosedLoopConfig) -> None:
        self.sim = Simulator(sim_config)
        data = self.sim.generate()
        events = data.log.events
        clicks = events.filter(events["event_type"] == EventType.CLICK.value)
        self.n_users, self.n_items = sim_config.n_users, sim_config.n_items
        users = clicks["user_id"].to_numpy().astype(np.int64) - 1
        items = clicks["item_id"].to_numpy().astype(np.int64) - 1
        self.histories: list[list[int]] = [[] for _ in range(self.n_users)]
        for u, i in zip(users.tolist(), items.tolist(), strict=True):
            self.histories[u].append(i)
        self.loop = loop
        self.initial_popularity = self.popularity()
        self.tail = long_tail_mask(self.initial_popularity, loop.head_share)
        self.true_vectors = self.sim.item_vectors_ / np.linalg.norm(
            self.sim.item_vectors_, axis=1, keepdims=True
        )
        self.refit()

    def matrix(self) -> sp.csr_matrix:
        rows = np.repeat(np.arange(self.n_users), [len(h) for h in self.histories])
        cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in self.histories])
        X = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(self.n_users, self.n_items)
        )
        X.data[:] = 1.0
        return X

    def popularity(self) -> np.ndarray:
        counts = np.zeros(self.n_items)
        for h in self.histories:
            np.add.at(counts, np.asarray(h, dtype=np.int64), 1.0)
        return counts

    def refit(self) -> None:
        X = self.matrix()
        self.B = ease_weights(X, self.loop.l2)
        pop = np.asarray(X.sum(axis=0)).ravel()
        self.prior = (1e-3 * pop / max(pop.max(), 1.0)).astype(np.float32)
        self.space = ItemSpace(
            self.n_items,
            item_ids=[str(i + 1) for i in range(self.n_items)],
            categories=self.sim.item_category_,
            category_names=tuple(self.sim.category_names_),
            popularity=pop.astype(np.float64),
            similarity=EmbeddingSimilarity(cooccurrence_vectors(X, dim=32, seed=self.loop.seed)),
        )

    def scores(self, users: IntArray) -> np.ndarray:
        rows = [np.unique(np.asarray(self.histories[u], dtype=np.int64)) for u in users]
        H = sp.csr_matrix(
            (
                np.ones(sum(len(r) for r in rows), dtype=np.float32),
                (np.repeat(np.arange(len(rows)), [len(r) for r in rows]), np.concatenate(rows)),
            ),
            shape=(len(users), self.n_items),
        )
        return np.asarray(H @ self.B, dtype=np.float32) + self.prior

    def ild(self, lists: IntArray) -> float:
        vals = []
        for row in lists:
            row = row[row >= 0]
            if len(row) < 2:
                continue
            v = self.true_vectors[row]
            s = v @ v.T
            n = len(row)
            vals.append((n * (n - 1) - (s.sum() - np.trace(s))) / (n * (n - 1)))
        return float(np.mean(vals)) if vals else 0.0


def _pipeline(policy: PolicyConfig, world: _World, bandit: BanditState) -> Pipeline:
    pipe = Pipeline.from_config(policy, world.space, bandit=bandit)
    pipe.filters.insert(0, SeenFilter())
    return pipe


def run_closed_loop(
    sim_config: SimulatorConfig, policy: PolicyConfig, loop: ClosedLoopConfig | None = None
) -> ClosedLoopResult:
    """Run one policy in the closed loop (see the module docstring); seeded by ``loop.seed``."""
    loop = loop or ClosedLoopConfig()
    world = _World(sim_config, loop)
    rng = np.random.default_rng(loop.seed)
    bandit = BanditState(world.n_items)
    pipe = _pipeline(policy, world, bandit)
    stats: list[RoundStats] = []
    shown_ever = np.zeros(world.n_items, dtype=np.int64)
    clicked_ever = np.zeros(world.n_items, dtype=bool)
    n_round_users = min(loop.users_per_round, world.n_users)
    for r in progress(range(loop.rounds), "closed loop", total=loop.rounds, unit="round"):
        users = np.sort(rng.choice(world.n_users, n_round_users, replace=False))
        scores = world.scores(users)
        hist = [np.asarray(world.histories[u], dtype=np.int64) for u in users]
        batch = pipe.run_batch(scores, hist, loop.k, world.space, rng)
        lists = batch.items
        ok = lists >= 0
        rep_users = np.repeat(users, ok.sum(axis=1))
        shown = lists[ok]
        out = world.sim.respond(rep_users + 1, shown + 1, rng, update_state=True)
        clicked = np.asarray(out["clicked"], dtype=bool)
        for u, i in zip(rep_users[clicked].tolist(), shown[clicked].tolist(), strict=True):
            world.histories[u].append(i)
        bandit.update(shown, clicked)
        np.add.at(shown_ever, shown, 1)
        clicked_ever[shown[clicked]] = True
        stats.append(
            RoundStats(
                round=r + 1,
                ctr=float(np.mean(out["p_click"])),
                clicks_per_list=float(clicked.sum() / len(users)),
                ild=world.ild(lists),
                tail_exposure=float(exposure(lists, world.tail).mean()),
                distinct_shown=len(np.unique(shown)),
            )
        )
        world.sim.advance(rng)
        if (r + 1) % loop.refit_every == 0:
            world.refit()
            pipe = _pipeline(policy, world, bandit)
    w = min(loop.window, len(stats))
    first, last = stats[:w], stats[-w:]
    sorted_exp = np.sort(shown_ever.astype(np.float64))
    n = len(sorted_exp)
    gini = float(
        (2 * np.arange(1, n + 1) - n - 1).dot(sorted_exp) / (n * sorted_exp.sum())
        if sorted_exp.sum() > 0
        else 0.0
    )
    summary = {
        "ctr_first": float(np.mean([s.ctr for s in first])),
        "ctr_last": float(np.mean([s.ctr for s in last])),
        "ctr_all": float(np.mean([s.ctr for s in stats])),
        "clicks_per_list_last": float(np.mean([s.clicks_per_list for s in last])),
        "ild_first": float(np.mean([s.ild for s in first])),
        "ild_last": float(np.mean([s.ild for s in last])),
        "tail_first": float(np.mean([s.tail_exposure for s in first])),
        "tail_last": float(np.mean([s.tail_exposure for s in last])),
        "items_shown": int((shown_ever > 0).sum()),
        "items_clicked": int(clicked_ever.sum()),
        "gini": gini,
    }
    return ClosedLoopResult(stats, summary)


def off_policy_check(
    sim_config: SimulatorConfig,
    targets: dict[str, PolicyConfig],
    n_requests: int = 3000,
    k: int = 10,
    explore_share: float = 0.3,
    seed: int = 0,
    l2: float = 50.0,
) -> dict[str, dict[str, Any]]:
    """Estimate deterministic target policies' clicks per list from ε-greedy logs.

    The logging policy shows the model's top ``k``, each slot explored with probability
    ``explore_share`` by a uniform draw from the next ``P`` candidates (``P`` = 90 or what
    the user's unseen items allow). The simulator's clicks do not depend on the position, so
    the item-level estimator applies: an item's inclusion probability is ``1 - share`` for
    the model's top ``k`` and ``k * share / P`` for a pool item (the explored slots are a
    uniform subset of the pool), and every list a target draws from the top 100 candidates
    has support. Returns per target: ``ips`` and ``snips`` estimates (95% CIs) and ``true``:
    the mean over the same requests of the sum of the true click probabilities of the
    target's list.

    Raises:
        ValueError: a target policy is stochastic (it has an explore stage).
    """
    loop = ClosedLoopConfig(seed=seed, l2=l2, k=k)
    world = _World(sim_config, loop)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(world.n_users, n_requests, replace=True))
    scores = world.scores(users)
    hist = [np.asarray(world.histories[u], dtype=np.int64) for u in users]
    pool_size, n_cand = 90, 100
    logger_pipe = Pipeline(
        [SeenFilter(), Exploration(explore_share, "epsilon", "candidates", pool_size=pool_size)],
        candidates=n_cand,
        name="logging",
    )
    logged = logger_pipe.run_batch(scores, hist, k, world.space, rng)
    if not (logged.items >= 0).all():
        raise ValueError("some users have fewer than k unseen items; use a larger catalogue")
    unseen = np.asarray([world.n_items - len(np.unique(h)) for h in hist])
    pool_len = np.minimum(pool_size, np.minimum(n_cand, unseen) - k)  # (N,)
    explored = np.asarray([[r == EXPLORING for r in row] for row in logged.reasons])
    inclusion = np.where(
        explored, (k * explore_share / np.maximum(pool_len, 1))[:, None], 1.0 - explore_share
    )
    rep = np.repeat(users, k)
    out = world.sim.respond(rep + 1, logged.items.ravel() + 1, rng)
    rewards = np.asarray(out["clicked"], dtype=np.float64).reshape(len(users), k)
    results: dict[str, dict[str, Any]] = {}
    for name, policy in targets.items():
        if any(getattr(s, "type", "") == "explore" for s in policy.stages):
            raise ValueError(f"off_policy_check needs deterministic targets; {name!r} explores")
        pipe = _pipeline(policy.model_copy(update={"candidates": n_cand}), world, BanditState(1))
        target = pipe.run_batch(scores, hist, k, world.space, rng)
        pi = np.asarray(
            [np.isin(lg, tg) for lg, tg in zip(logged.items, target.items, strict=True)],
            dtype=np.float64,
        )
        truth = world.sim.respond(rep + 1, target.items.ravel() + 1, rng)["p_click"]
        results[name] = {
            "ips": ips(rewards, pi, inclusion).as_dict(),
            "snips": snips(rewards, pi, inclusion).as_dict(),
            "true": float(np.asarray(truth).reshape(len(users), k).sum(axis=1).mean()),
        }
    return results


__all__ = [
    "ClosedLoopConfig",
    "ClosedLoopResult",
    "RoundStats",
    "off_policy_check",
    "run_closed_loop",
]
