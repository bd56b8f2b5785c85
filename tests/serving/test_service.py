"""`RecService` driven directly: freshness, fallbacks, catalogue, erasure, reasons, reload."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from recpilot.errors import UnknownIdError
from recpilot.models.base import Query
from recpilot.serving.registry import ModelHolder, ModelRegistry
from recpilot.serving.service import (
    NEW_ITEM,
    POPULAR,
    HistoryCache,
    RecService,
    SingleItemScores,
)
from recpilot.serving.store import EventRecord, HistoryEvent, Store, now_ms

from .conftest import ITEMS_PER_BLOCK, N_BLOCKS, item, make_settings, open_service, pg_store


def view(
    event_id: str, user: str, item_id: str, ts: int = 1, event_type: str = "view"
) -> EventRecord:
    return EventRecord(event_id, user, item_id, event_type, ts)


def ids(recs: object) -> list[str]:
    return [i.item_id for i in recs.items]  # type: ignore[attr-defined]


def block_of(item_id: str) -> int:
    return int(item_id[1 : item_id.index("_")])


def _event_changes_next_recommendation(service: RecService) -> None:
    service.ingest([view("e1", "alice", item(0, 0))])
    before = service.recommend_for_user("alice", k=5)
    assert all(block_of(i) == 0 for i in ids(before))
    assert before.items[0].reason == f"because you viewed {item(0, 0)}"
    newest = before.items[0].item_id
    service.ingest([view("e2", "alice", newest, ts=2), view("e3", "alice", item(2, 1), ts=3)])
    after = service.recommend_for_user("alice", k=10)
    assert ids(after)[:5] != ids(before)
    assert newest not in ids(after) and item(2, 1) not in ids(after)  # seen: excluded
    assert f"because you viewed {item(2, 1)}" in {i.reason for i in after.items}
    assert after.model_version == before.model_version


def test_an_event_changes_the_next_recommendation(service: RecService) -> None:
    _event_changes_next_recommendation(service)


def test_an_event_changes_the_next_recommendation_on_postgresql(
    tmp_path: Path, artifact: Path
) -> None:
    store = pg_store()
    svc = open_service(make_settings(artifact, store.url), store)
    try:
        _event_changes_next_recommendation(svc)
    finally:
        svc.close()
        store.drop()
        store.close()


def test_history_is_cached_and_invalidated_by_new_events(service: RecService) -> None:
    service.ingest([view("e1", "bob", item(1, 0))])
    service.recommend_for_user("bob")
    hits = service.cache.hits
    service.recommend_for_user("bob")
    assert service.cache.hits == hits + 1
    service.ingest([view("e2", "bob", item(1, 1), ts=2)])
    assert [h.item_id for h in service.history("bob")] == [item(1, 0), item(1, 1)]
    service.ingest([view("e2", "bob", item(1, 1), ts=2)])  # a re-post changes nothing
    assert len(service.history("bob")) == 2


def test_cache_refuses_a_read_that_raced_an_invalidation() -> None:
    cache = HistoryCache(max_users=2)
    stale = (HistoryEvent("a", "view", 1),)
    token = cache.token()
    cache.invalidate(["u"])  # new events committed while the reader was reading
    cache.put("u", stale, token)
    assert cache.get("u") is None
    cache.put("u", stale, cache.token())
    assert cache.get("u") == stale
    for user in ("v", "w"):
        cache.put(user, stale, cache.token())
    assert cache.get("u") is None and len(cache) == 2  # least recently used evicted


def test_idempotent_ingest_stores_once(service: RecService) -> None:
    batch = [view("same-1", "carol", item(0, 1)), view("same-2", "carol", item(0, 2))]
    first = service.ingest(batch)
    second = service.ingest(batch + batch)
    assert (first.stored, first.duplicates) == (2, 0)
    assert (second.received, second.stored, second.duplicates) == (4, 0, 4)
    assert service.store.count_events() == 2


def test_new_user_gets_popular_items_from_the_store(service: RecService) -> None:
    now = now_ms()
    events = [view(f"p{n}", f"fan{n}", item(3, 2), ts=now - n) for n in range(3)]
    events += [view("q", "fan0", item(1, 5), ts=now)]
    events += [view("old", "fan0", item(0, 0), ts=now - 400 * 3_600_000)]  # outside the window
    service.ingest(events)
    recs = service.recommend_for_user("stranger", k=4)
    assert ids(recs)[:2] == [item(3, 2), item(1, 5)]
    assert [i.score for i in recs.items[:2]] == [3.0, 1.0]  # events in the window
    assert all(i.reason == POPULAR for i in recs.items) and len(recs.items) == 4


def test_popular_fallback_within_a_category(service: RecService) -> None:
    service.put_items([(item(2, j), True, {"category": "garden"}) for j in range(3)])
    recs = service.recommend_for_user("stranger", k=5, category="garden")
    assert sorted(ids(recs)) == [item(2, j) for j in range(3)]
    personal = service.recommend_for_history([item(0, 0)], k=5, category="garden")
    assert set(ids(personal)) == {item(2, j) for j in range(3)}
    assert service.recommend_for_user("stranger", category="no-such-category").items == []


def test_unknown_history_items_are_ignored_with_a_warning(
    service: RecService, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="recpilot.serving.service"):
        recs = service.recommend_for_history(["no-such-item", item(1, 2)], k=3)
    assert recs.ignored_items == ["no-such-item"]
    assert "does not know" in caplog.text
    assert all(block_of(i) == 1 for i in ids(recs))
    only_unknown = service.recommend_for_history(["zzz"], k=3)
    assert all(i.reason == POPULAR for i in only_unknown.items)


def test_unavailable_items_are_never_recommended(service: RecService) -> None:
    hidden = {item(0, j) for j in range(1, ITEMS_PER_BLOCK)}
    service.put_items([(i, False, {}) for i in sorted(hidden)[:-1]])
    service.delete_item(sorted(hidden)[-1])
    service.ingest([view(f"x{n}", f"fan{n}", item(0, 3), ts=now_ms()) for n in range(5)])
    lists = [
        service.recommend_for_history([item(0, 0)], k=20),
        service.recommend_for_user("stranger", k=20),
        service.similar_items(item(0, 0), k=20),
        service.recommend_for_history([item(0, 0)], k=20, exclude_seen=False),
    ]
    for recs in lists:
        assert recs.items and not hidden & set(ids(recs))
    service.put_items([(item(0, 3), True, {})])
    assert item(0, 3) in ids(service.recommend_for_history([item(0, 0)], k=3))


def test_new_catalogue_items_get_an_exploration_slot(service: RecService) -> None:
    service.settings.new_item_slots = 1
    service.put_items([("fresh", True, {"category": "c"}), (item(1, 1), True, {"category": "c"})])
    recs = service.recommend_for_history([item(1, 0)], k=4)
    assert recs.items[-1].item_id == "fresh" and recs.items[-1].reason == NEW_ITEM
    assert len(recs.items) == 4
    seen = service.recommend_for_history(["fresh", item(1, 0)], k=4)
    assert "fresh" not in ids(seen) and seen.ignored_items == ["fresh"]
    similar = service.similar_items("fresh", k=3)  # unknown to the model: its category
    assert ids(similar)[0] == item(1, 1)


def test_similar_items(service: RecService) -> None:
    recs = service.similar_items(item(2, 0), k=3)
    assert item(2, 0) not in ids(recs) and all(block_of(i) == 2 for i in ids(recs))
    assert recs.items[0].reason == f"similar to {item(2, 0)}"
    with pytest.raises(UnknownIdError, match="unknown item id"):
        service.similar_items("nope")


def test_reasons_name_the_most_influential_recent_item(service: RecService) -> None:
    service.put_items([(item(3, 0), True, {"title": "The Third Block"})])
    service.ingest(
        [
            view("a", "dave", item(1, 0), ts=1),
            view("b", "dave", item(3, 0), ts=2, event_type="purchase"),
        ]
    )
    recs = service.recommend_for_user("dave", k=8)
    for rec in recs.items:
        assert rec.because_item_id == (item(1, 0) if block_of(rec.item_id) == 1 else item(3, 0))
    assert "because you bought The Third Block" in {r.reason for r in recs.items}


def test_only_cached_histories_are_answered_in_place(service: RecService) -> None:
    assert not service.answers_quickly("hal")  # the store must be read: the thread pool
    service.recommend_for_user("hal", k=3)
    assert service.answers_quickly("hal") and service.answers_quickly(None)
    service.ingest([view("h1", "hal", item(0, 1))])
    assert not service.answers_quickly("hal")  # invalidated by the event


def test_user_scores_are_reused_until_the_next_event(service: RecService) -> None:
    service.ingest([view("i1", "ida", item(1, 0), ts=1)])
    first = service.recommend_for_user("ida", k=5)
    hits = service.user_scores.hits
    again = service.recommend_for_user("ida", k=5)
    assert service.user_scores.hits == hits + 1  # no model pass
    assert [(r.item_id, r.score) for r in again.items] == [
        (r.item_id, r.score) for r in first.items
    ]
    service.ingest([view("i2", "ida", item(3, 1), ts=2)])
    after = service.recommend_for_user("ida", k=5)
    assert service.user_scores.hits == hits + 1  # a new history: computed afresh
    assert {block_of(i) for i in ids(after)} != {block_of(i) for i in ids(first)}
    fresh = service.models.current.model.score(
        Query.from_histories([service.models.current.item_indices([item(1, 0), item(3, 1)])])
    )[0]
    idx = service.models.current.item_indices(ids(after))
    np.testing.assert_allclose([r.score for r in after.items], fresh[idx], rtol=1e-6)
    service.erase_user("ida")
    assert service.user_scores.get("ida", service.models.current.model, None) is None
    assert "ida" not in service.user_scores._rows


def test_user_scores_skip_onboarding_choices(service: RecService) -> None:
    a = service.recommend_for_user("jo", k=4, chosen_items=[item(0, 0)])
    b = service.recommend_for_user("jo", k=4, chosen_items=[item(2, 0)])
    assert {block_of(i) for i in ids(a)} == {0} and {block_of(i) for i in ids(b)} == {2}


def test_reasons_reuse_cached_one_item_rows(service: RecService) -> None:
    service.ingest([view("a", "gus", item(1, 0), ts=1), view("b", "gus", item(2, 0), ts=2)])
    first = service.recommend_for_user("gus", k=8)
    misses = service.single_scores.misses
    again = service.recommend_for_user("gus", k=8)
    assert service.single_scores.misses == misses  # the same rows: no model pass
    assert [(r.item_id, r.reason) for r in again.items] == [
        (r.item_id, r.reason) for r in first.items
    ]


def test_single_item_scores_match_the_model_and_stay_bounded(service: RecService) -> None:
    model = service.models.current.model
    cache = SingleItemScores(max_bytes=1)  # room for the minimum of 8 rows
    rows = cache.rows(model, [3, 5])
    expected = model.score(Query.from_histories([np.empty(0, dtype=np.int64), [3], [5]]))
    np.testing.assert_array_equal(rows, expected)
    for i in range(model.n_items):
        cache.rows(model, [i])
    assert len(cache._rows) == 8
    np.testing.assert_array_equal(cache.rows(model, [5])[1], expected[2])
    other = type(model).load(service.models.current.path)  # another model object: new cache
    cache.rows(other, [1])
    assert cache._model is other and set(cache._rows) == {-1, 1}


def test_erase_user_leaves_a_new_user(service: RecService) -> None:
    stranger = ids(service.recommend_for_user("stranger", k=5))
    service.ingest([view("e1", "erin", item(0, 0)), view("e2", "erin", item(0, 1), ts=2)])
    assert ids(service.recommend_for_user("erin", k=5)) != stranger
    service.impressions.flush()
    assert service.store.user_row_counts("erin")["impressions"] == 5
    service.recommend_for_user("erin", k=5)  # impressions still buffered at erasure
    counts = service.erase_user("erin")
    assert counts["events"] == 2
    service.impressions.flush()
    assert service.store.user_row_counts("erin") == {"events": 0, "impressions": 0}
    assert service.history("erin") == ()
    after = service.recommend_for_user("erin", k=5)
    assert ids(after) == stranger and all(i.reason == POPULAR for i in after.items)
    service.erase_user("erin")  # erasing twice is harmless


def test_impressions_are_logged(service: RecService) -> None:
    recs = service.recommend_for_history([item(0, 0)], k=3, user_id="fay")
    service.impressions.flush()
    logged = service.store.impressions("fay")
    assert [(i.item_id, i.position) for i in logged] == [(x, p) for p, x in enumerate(ids(recs))]
    assert {i.model_version for i in logged} == {recs.model_version}
    assert {i.request_id for i in logged} == {recs.request_id}


def test_reload_swaps_atomically_under_concurrent_requests(
    tmp_path: Path, registry_copy: Path
) -> None:
    settings = make_settings(registry_copy, f"sqlite:///{tmp_path / 'reload.db'}")
    svc = RecService(
        Store(settings.db),
        ModelHolder(registry_copy),
        settings.model_copy(update={"log_impressions": False}),
    )
    svc.start()
    svc.ingest([view("e", "gus", item(2, 2))])
    versions: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                a = svc.recommend_for_user("gus", k=3)
                b = svc.recommend_for_history([item(1, 1)], k=3)
                assert len(a.items) == 3 and len(b.items) == 3
                versions.update((a.model_version, b.model_version))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for version in ("v0002", "v0001", "v0002"):
            previous, current = svc.reload(version)
            assert current == version and previous != version
    finally:
        stop.set()
        for t in threads:
            t.join()
        svc.close()
    assert not errors
    assert svc.model_version == "v0002" == ModelRegistry(registry_copy).current_version()
    assert versions <= {"v0001", "v0002"} and versions


def test_reload_prepares_the_new_model_before_the_swap(registry_copy: Path) -> None:
    holder = ModelHolder(registry_copy)
    old = holder.load()
    seen: list[tuple[str, str]] = []

    def prepare(new: object) -> None:
        seen.append((holder.current.version, new.version))  # type: ignore[attr-defined]

    assert holder.reload("v0002", prepare=prepare) == ("v0001", "v0002")
    assert seen == [("v0001", "v0002")]  # prepared while the old model still served

    def broken(new: object) -> None:
        raise RuntimeError("index build failed")

    with pytest.raises(RuntimeError, match="index build failed"):
        holder.reload("v0001", prepare=broken)
    assert holder.current.version == "v0002" != old.version  # the failed one never served
    assert ModelRegistry(registry_copy).current_version() == "v0002"


def test_block_structure_is_what_the_tests_assume() -> None:
    assert N_BLOCKS >= 4  # block 3 exists
