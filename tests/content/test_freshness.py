"""Item freshness (``freshness: true``): the item-age bias that lets brand-new items compete."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recpilot.config import SASRecConfig
from recpilot.content import HashingEncoder, catalogue_vectors
from recpilot.data.interactions import Interactions
from recpilot.data.vocab import Vocabulary
from recpilot.errors import DataError
from recpilot.models.base import Query, Recommender
from recpilot.models.nn.freshness import NEVER, ItemFreshness
from recpilot.models.sequential import (
    BERT4RecRecommender,
    HSTURecommender,
    SASRecRecommender,
    first_seen_times,
)
from tests.content.conftest import GROUPS

PER_GROUP = 15
WARM = 12  # items 12..14 of each group are introduced after the training period
STEP = 1000  # item j of a group is introduced at time j * STEP
FRESH = dict(
    d_model=16,
    n_layers=1,
    max_len=8,
    dropout=0.1,
    seed=1,
    text_features=True,
    id_dropout=0.3,
    training={"max_epochs": 30, "batch_size": 32, "learning_rate": 5e-3, "weight_decay": 0.0},
)


def intro(item: int) -> int:
    return (item % PER_GROUP) * STEP


def fresh_log(n_users: int = 240, seed: int = 0) -> Interactions:
    """Users of one topic group who mostly pick the newest item of their group at each step.

    Items appear over time (item ``j`` of a group at ``j * STEP``); at each event a user picks
    the newest item of the group introduced so far (not yet picked) with probability 0.7, else
    an older one. Training events end before the last ``PER_GROUP - WARM`` items of each group
    appear: they are cold, described by their text alone.
    """
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        g = u % len(GROUPS)
        t = int(rng.integers(STEP, WARM * STEP - 60))
        picked: set[int] = set()
        for _ in range(6):
            avail = [j for j in range(PER_GROUP) if j * STEP <= t and j not in picked]
            if not avail:
                break
            j = max(avail) if rng.random() < 0.7 or len(avail) == 1 else int(rng.choice(avail[:-1]))
            picked.add(j)
            users.append(u)
            items.append(g * PER_GROUP + j)
            times.append(t)
            t += int(rng.integers(5, 15))
    ids = np.arange(len(GROUPS) * PER_GROUP)
    table = pl.DataFrame(
        {
            "item_id": ids,
            "title": [f"{GROUPS[i // PER_GROUP].split()[i % 3]} story number{i}" for i in ids],
            "genres": [[GROUPS[i // PER_GROUP].split()[0]] for i in ids],
        }
    )
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "item_id": np.asarray(items, dtype=np.int64),
            "timestamp": np.asarray(times, dtype=np.int64),
            "event_type": ["view"] * len(users),
        }
    )
    return Interactions.from_frame(frame, items=Vocabulary(ids.astype(np.int64)), item_table=table)


@pytest.fixture(scope="module")
def log() -> Interactions:
    return fresh_log()


def fit(log: Interactions, freshness: bool) -> SASRecRecommender:
    config = SASRecConfig.model_validate({**FRESH, "freshness": freshness})
    vectors = catalogue_vectors(log, HashingEncoder(64))
    return SASRecRecommender(config).set_text_vectors(vectors).fit(log)


@pytest.fixture(scope="module")
def fresh_model(log: Interactions) -> SASRecRecommender:
    return fit(log, True)


def late_queries(log: Interactions) -> Query:
    """Eight users per group, queried after every item of their group has appeared."""
    users = list(range(8 * len(GROUPS)))
    base = Query.for_users(log, users)
    late = (PER_GROUP - 1) * STEP + 300  # the newest item appeared 300 s ago
    return Query(base.users, base.histories, tuple(np.full(len(h), late) for h in base.histories))


def best_new_rank(model: Recommender, query: Query) -> list[int]:
    """Per row: the full-catalogue rank (0 = first) of the best brand-new item of its group."""
    scores = model.score(query)
    ranks = []
    for row, user in enumerate(query.users):
        g = int(user) % len(GROUPS)
        order = np.argsort(-scores[row], kind="stable").tolist()
        new = [g * PER_GROUP + j for j in range(WARM, PER_GROUP)]
        ranks.append(min(order.index(i) for i in new))
    return ranks


def test_buckets_new_items_and_the_shared_new_mass() -> None:
    fresh = ItemFreshness(torch.tensor([0, 10, 10, NEVER]), n_buckets=6)
    bucket = fresh.buckets(torch.tensor([10, 11, 14, 100]))
    # seen strictly before the query time; bucket 1 + ⌊log2 age⌋: age 1 → 1, age 4 → 3,
    # age 10 → 4, age 90 → capped at 5; never seen → 0
    assert bucket.tolist() == [[4, 0, 0, 0], [4, 1, 1, 0], [4, 3, 3, 0], [5, 5, 5, 0]]
    with torch.no_grad():
        fresh.bias.copy_(torch.arange(6, dtype=torch.float32))
    seen, bias = fresh(torch.tensor([10]))
    assert seen.tolist() == [[True, False, False, False]]
    # the three unseen items share the "new" bucket: b[0] - log 3 each
    np.testing.assert_allclose(bias[0].detach().numpy(), [4.0] + [-np.log(3)] * 3, rtol=1e-6)
    fresh.add_items(torch.tensor([NEVER, 50]))
    assert fresh.n_items == 6 and int(fresh.clock) == 50


def test_first_seen_times(log: Interactions) -> None:
    first = first_seen_times(log)
    cold = (np.arange(log.n_items) % PER_GROUP) >= WARM
    assert (first[cold] == NEVER).all()
    assert (first[~cold] >= [intro(i) for i in np.flatnonzero(~cold)]).all()


def test_freshness_needs_text_and_the_full_loss() -> None:
    with pytest.raises(ValueError, match="text_features"):
        SASRecConfig(freshness=True)
    with pytest.raises(ValueError, match="loss: full"):
        SASRecConfig(freshness=True, text_features=True, loss="sampled")


def test_bert4rec_has_no_freshness(log: Interactions) -> None:
    from recpilot.config import BERT4RecConfig

    config = BERT4RecConfig.model_validate({**FRESH, "freshness": True})
    model = BERT4RecRecommender(config).set_text_vectors(catalogue_vectors(log, HashingEncoder(64)))
    with pytest.raises(DataError, match="next-item"):
        model.fit(log)


def observed(model: SASRecRecommender) -> SASRecRecommender:
    """A copy that knows when the cold items were added to the catalogue."""
    model = copy.deepcopy(model)
    cold = np.array([i for i in range(len(GROUPS) * PER_GROUP) if i % PER_GROUP >= WARM])
    model.observe_items(cold, np.array([intro(i) for i in cold]))
    return model


def test_freshness_raises_brand_new_items(
    log: Interactions, fresh_model: SASRecRecommender
) -> None:
    query = late_queries(log)
    with_age = best_new_rank(observed(fresh_model), query)
    without = best_new_rank(observed(fit(log, False)), query)
    # the newest items of the user's group, never seen in training, now lead the ranking
    assert np.mean(with_age) < 4, with_age
    assert np.mean(with_age) < np.mean(without) / 2, (with_age, without)


def test_never_seen_items_share_the_new_bucket(
    log: Interactions, fresh_model: SASRecRecommender
) -> None:
    """Without addition times the cold items are "new"; their scores differ by text only."""
    fresh = fresh_model.module_.freshness  # type: ignore[union-attr]
    assert int(fresh.clock) == int(log.timestamp.max())
    scores = fresh_model.score(late_queries(log))
    assert np.isfinite(scores).all()
    seen, bias = fresh(torch.tensor([PER_GROUP * STEP]))
    cold = [i for i in range(log.n_items) if i % PER_GROUP >= WARM]
    assert not seen[0, cold].any() and torch.allclose(bias[0, cold], bias[0, cold[0]])


def test_freshness_roundtrip_and_add_items(
    log: Interactions, fresh_model: SASRecRecommender, tmp_path: Path
) -> None:
    query = late_queries(log)
    untimed = Query.from_histories([h for h in query.histories])
    loaded = Recommender.load(fresh_model.save(tmp_path / "fresh"))
    assert isinstance(loaded, SASRecRecommender) and loaded.config.freshness
    for q in (query, untimed):
        np.testing.assert_array_equal(loaded.score(q), fresh_model.score(q))
    # an item added with its text: "new" until its addition time is known, then it ages
    enc = HashingEncoder(64)
    idx = loaded.add_items([1000], enc.encode(["space rocket astronaut story"]))
    assert idx.tolist() == [log.n_items]
    space = Query(query.users[:1], query.histories[:1], query.timestamps[:1])  # type: ignore[index]
    assert loaded.score(space).shape == (1, log.n_items + 1)
    first = loaded.module_.freshness.first_seen  # type: ignore[union-attr]
    assert int(first[-1]) == NEVER
    loaded.add_items([1000], enc.encode(["space rocket astronaut story"]), added_at=5)
    assert int(first[-1]) == 5  # known ids keep their index; only their first-seen time is set
    again = Recommender.load(loaded.save(tmp_path / "grown"))
    np.testing.assert_array_equal(again.score(space), loaded.score(space))


def test_hstu_reads_freshness(log: Interactions) -> None:
    from recpilot.config import HSTUConfig

    config = HSTUConfig.model_validate(
        {**FRESH, "freshness": True, "training": {**FRESH["training"], "max_epochs": 2}}  # type: ignore[dict-item]
    )
    model = HSTURecommender(config).set_text_vectors(catalogue_vectors(log, HashingEncoder(64)))
    scores = model.fit(log).score(late_queries(log))
    assert np.isfinite(scores).all()


def test_item_release_times_from_dates_and_titles() -> None:
    from datetime import date

    from recpilot.content.text import NO_TIME, item_release_times

    table = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4],
            "title": ["Heat (1995)", "Up (2009) ", "No year", "Dated (1990)"],
            "release_date": [None, None, None, date(1997, 3, 2)],
        }
    )
    times = item_release_times(table, [2, 1, 3, 4, 99])
    day = 86_400_000  # the event clock is milliseconds
    assert times.tolist() == [
        14_245 * day,  # 2009-01-01
        9_131 * day,  # 1995-01-01
        NO_TIME,
        9_922 * day,  # 1997-03-02: the release date wins over the title's year
        NO_TIME,  # not in the table
    ]
    assert (item_release_times(None, [1]) == NO_TIME).all()


def test_item_times_set_the_first_seen_times(log: Interactions) -> None:
    config = SASRecConfig.model_validate(
        {**FRESH, "freshness": True, "training": {**FRESH["training"], "max_epochs": 1}}  # type: ignore[dict-item]
    )
    releases = np.array([intro(i) for i in range(log.n_items)], dtype=np.int64)
    releases[0] = NEVER  # unknown: its first event counts
    model = SASRecRecommender(config).set_text_vectors(catalogue_vectors(log, HashingEncoder(64)))
    model.set_item_times(releases).fit(log)
    first = model.module_.freshness.first_seen.numpy()  # type: ignore[union-attr]
    expected = np.minimum(first_seen_times(log), releases)
    np.testing.assert_array_equal(first, expected)
    assert first[0] == first_seen_times(log)[0]
    with pytest.raises(DataError, match="one entry per training item"):
        SASRecRecommender(config).set_text_vectors(
            catalogue_vectors(log, HashingEncoder(64))
        ).set_item_times(releases[:3]).fit(log)


def test_text_only_boost_lifts_only_text_only_items(
    log: Interactions, fresh_model: SASRecRecommender, tmp_path: Path
) -> None:
    query = late_queries(log)
    base = fresh_model.score(query)
    boosted = copy.deepcopy(fresh_model)
    boosted.config = boosted.config.model_copy(update={"text_only_boost": 2.5})
    cold = (np.arange(log.n_items) % PER_GROUP) >= WARM  # no training event: text only
    expected = np.broadcast_to(np.where(cold, 2.5, 0.0), base.shape)
    np.testing.assert_allclose(boosted.score(query) - base, expected, atol=1e-5)
    # saved with the config, so a served model boosts the same way
    loaded = Recommender.load(boosted.save(tmp_path / "boosted"))
    assert isinstance(loaded, SASRecRecommender) and loaded.config.text_only_boost == 2.5
    np.testing.assert_array_equal(loaded.score(query), boosted.score(query))
