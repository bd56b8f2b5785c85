"""The storage suite; every test runs on SQLite and on PostgreSQL (skipped when unreachable)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from recpilot.errors import ConfigError
from recpilot.serving.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    EventRecord,
    HistoryEvent,
    Impression,
    Store,
)


def ev(event_id: str, user: str, item: str, ts: int, event_type: str = "view") -> EventRecord:
    return EventRecord(event_id, user, item, event_type, ts)


def test_migrations_are_versioned_and_applied_once(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # a second start applies nothing
    table = store.tables.schema_version
    with store.engine.connect() as conn:
        versions = conn.execute(select(table.c.version).order_by(table.c.version)).scalars().all()
    assert versions == [m.version for m in MIGRATIONS]


def test_events_are_idempotent_by_client_event_id(store: Store) -> None:
    first = store.add_events([ev("e1", "u", "a", 1), ev("e2", "u", "b", 2), ev("e1", "u", "a", 1)])
    assert (first.stored, first.duplicates, first.users) == (2, 1, frozenset({"u"}))
    again = store.add_events([ev("e1", "u", "a", 1), ev("e2", "u", "b", 2), ev("e3", "v", "a", 3)])
    assert (again.stored, again.duplicates, again.users) == (1, 2, frozenset({"v"}))
    assert store.count_events() == 3
    assert store.add_events([]).stored == 0


def test_user_history_is_latest_events_oldest_first(store: Store) -> None:
    store.add_events(
        [ev(f"e{t}", "u", f"i{t}", 1000 + t, "click" if t % 2 else "view") for t in range(6)]
        + [ev("x", "other", "z", 5000), ev("late-but-old", "u", "old", 10)]
    )
    history = store.user_history("u", limit=3)
    assert history == [
        HistoryEvent("i3", "click", 1003),
        HistoryEvent("i4", "view", 1004),
        HistoryEvent("i5", "click", 1005),
    ]
    assert next(h.item_id for h in store.user_history("u", event_types=["view"])) == "old"
    assert store.user_history("nobody") == []


def test_popular_items_counts_recent_events(store: Store) -> None:
    store.add_events(
        [
            ev("1", "a", "x", 100),
            ev("2", "b", "x", 200),
            ev("3", "a", "y", 300),
            ev("4", "c", "old", 1),
            ev("5", "d", "old", 2),
            ev("6", "e", "old", 3),
        ]
    )
    assert store.popular_items(since=100) == [("x", 2), ("y", 1)]
    assert store.popular_items(since=0, limit=1) == [("old", 3)]


def test_catalogue_upsert_delete_and_changes(store: Store) -> None:
    assert store.put_items([("a", True, {"category": "books", "title": "A"}), ("b", True, {})]) == 2
    created = store.get_item("a")
    assert created is not None and created.category == "books" and created.available
    store.put_items([("a", False, {"category": "films"})])
    updated = store.get_item("a")
    assert updated is not None
    assert (updated.available, updated.category, updated.metadata) == (
        False,
        "films",
        {"category": "films"},
    )
    assert updated.created_at == created.created_at  # kept from the first insert
    store.delete_item("b")
    store.delete_item("never-listed")  # a tombstone: never recommended either
    rows = {r.item_id: r for r in store.items_changed_since(0)}
    assert set(rows) == {"a", "b", "never-listed"}
    assert not rows["b"].available and rows["b"].metadata == {}
    assert store.items_changed_since(rows["never-listed"].updated_at + 1) == []


def test_erase_user_leaves_nothing_about_them(store: Store) -> None:
    store.add_events([ev("1", "gone", "a", 1), ev("2", "gone", "b", 2), ev("3", "kept", "a", 3)])
    store.log_impressions(
        [
            Impression("r", "gone", "c", 0, "v1", "popular now", 5),
            Impression("r2", "kept", "c", 0, "v1", "popular now", 6),
        ]
    )
    assert store.erase_user("gone") == {"events": 2, "impressions": 1}
    assert store.user_row_counts("gone") == {"events": 0, "impressions": 0}
    assert store.user_history("gone") == []
    assert "gone" not in store.events_frame()["user_id"].to_list()
    assert store.user_row_counts("kept") == {"events": 1, "impressions": 1}


def test_events_frame_is_canonical(store: Store) -> None:
    store.add_events(
        [EventRecord("1", "u", "a", "rating", 10, value=4.5, session_id="s"), ev("2", "v", "b", 5)]
    )
    frame = store.events_frame()
    assert frame.columns == ["user_id", "item_id", "timestamp", "event_type", "value", "session_id"]
    assert frame.row(0) == ("u", "a", 10, "rating", 4.5, "s")
    assert store.events_frame(event_types=["view"]).height == 1


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for batch in range(5):
                store.add_events(
                    [ev(f"w{worker}-{batch}-{i}", f"u{worker}", "x", i) for i in range(20)]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count_events() == 4 * 5 * 20


def test_invalid_urls_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file path"):
        Store("sqlite://")
    with pytest.raises(ConfigError, match="unsupported database"):
        Store("mysql://u@h/db")
    with pytest.raises(ConfigError, match="invalid database URL"):
        Store("not a url")
    with pytest.raises(ConfigError, match="table_prefix"):
        Store(f"sqlite:///{tmp_path / 'x.db'}", table_prefix="bad-prefix;")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'deep' / 'wal.db'}")
    try:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        store.close()


def test_concurrent_batches_are_group_committed_and_counted_once(store: Store) -> None:
    """Threads post overlapping batches: every id is stored once, by exactly one batch, and
    each batch is readable as soon as its call returns."""
    results: list[tuple[int, int]] = []
    missing: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def post(thread: int) -> None:
        barrier.wait()
        for b in range(8):
            # ids shared by neighbouring threads: g{b}-{k} for k in thread and thread+1
            batch = [
                ev(f"g{b}-{(thread + j) % 7}-{j // 2}", f"u{thread}", "a", b) for j in range(10)
            ]
            result = store.add_events(batch)
            ids = {r.event_id for r in batch}
            with store.engine.connect() as conn:
                table = store.tables.events
                found = set(
                    conn.execute(
                        select(table.c.event_id).where(table.c.event_id.in_(ids))
                    ).scalars()
                )
            with lock:
                results.append((result.stored, result.duplicates))
                missing.extend(ids - found)

    threads = [threading.Thread(target=post, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not missing  # committed before add_events returned
    unique = store.count_events()
    assert sum(s for s, _ in results) == unique
    assert sum(s + d for s, d in results) == 6 * 8 * 10
    assert store._group.batches == 6 * 8 and store._group.transactions <= 6 * 8


def test_sqlite_checkpoints_run_in_the_background_and_stop(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    store.migrate()
    wal = tmp_path / "wal.db-wal"
    store.add_events([EventRecord(f"e{i}", "u", "i", "view", i) for i in range(2000)])
    assert wal.stat().st_size > 0
    store.start_checkpoints(interval_s=0.05)
    deadline = time.monotonic() + 10
    while store.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.checkpoints >= 2
    thread = store._checkpoints
    store.close()
    assert thread is not None and not thread.is_alive()
    reopened = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    assert reopened.count_events() == 2000  # checkpointed or not, every commit is there
    reopened.close()
