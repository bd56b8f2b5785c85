"""The event store and item catalogue: SQLAlchemy Core over SQLite (WAL) or PostgreSQL.

One code path serves both back ends; the only dialect-specific construct is the ``INSERT ...
ON CONFLICT`` used for idempotent event ingestion and catalogue upserts, which SQLite and
PostgreSQL spell the same way.

Tables (all names carry an optional prefix, so several stores can share one database):

- ``events``: one row per client event, ``event_id`` unique (re-posting an id stores nothing);
  ``timestamp`` in ms since the Unix epoch, as in `recpilot.data.schema`.
- ``items``: the catalogue: availability, a JSON metadata object and its ``category``; deleted
  items stay as unavailable tombstones so that they are never recommended again.
- ``impressions``: what was shown, to whom, at which position, by which model version.
- ``schema_version``: the versioned migrations applied so far (`MIGRATIONS`, applied at start).

Writes commit before the method returns. SQLite runs in WAL mode with ``synchronous=FULL`` by
default, so an answered write survives a crash of the process and of the machine.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import polars as pl
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from recpilot.errors import ConfigError, RecPilotError

logger = logging.getLogger(__name__)

#: Longest accepted external id (user, item, event, session) in characters.
MAX_ID_LENGTH = 256
#: Longest accepted event type name.
MAX_EVENT_TYPE_LENGTH = 64

SqliteSync = Literal["FULL", "NORMAL"]


class StoreError(RecPilotError):
    """The store cannot be reached, migrated or written."""


def now_ms() -> int:
    """Wall-clock time in ms since the Unix epoch."""
    return int(time.time() * 1000)


# -- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRecord:
    """One event as stored: external ids, time in ms since the Unix epoch."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: int
    value: float | None = None
    session_id: str | None = None


class HistoryEvent(NamedTuple):
    """One entry of a user's history (oldest first in a history list).

    A named tuple: ``tuple(event)`` is the plain tuple the service's history cache keeps (see
    `recpilot.serving.service.RawHistory`).
    """

    item_id: str
    event_type: str
    timestamp: int


@dataclass(frozen=True)
class AddResult:
    """What `Store.add_events` did: ids newly stored, duplicates ignored, users touched."""

    stored: int
    duplicates: int
    users: frozenset[str]


@dataclass(frozen=True)
class ItemRecord:
    """One catalogue row."""

    item_id: str
    available: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Impression:
    """One shown item: who saw it (None: anonymous), where, why, from which model.

    ``propensity``: the probability that the guidance policy showed this item at this position
    (1 for deterministic lists; None for impressions logged before propensities existed).
    """

    request_id: str
    user_id: str | None
    item_id: str
    position: int
    model_version: str
    reason: str
    shown_at: int
    propensity: float | None = None


def category_of(metadata: dict[str, Any]) -> str | None:
    """The ``category`` of an item's metadata as a string, or None."""
    value = metadata.get("category")
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:MAX_ID_LENGTH]


# -- schema ----------------------------------------------------------------------------------------
def _id_column(name: str, **kwargs: Any) -> Column[Any]:
    return Column(name, String(MAX_ID_LENGTH), **kwargs)


@dataclass(frozen=True)
class Tables:
    """The store's tables in their latest schema, with the given name prefix."""

    metadata: MetaData
    schema_version: Table
    events: Table
    items: Table
    impressions: Table

    @classmethod
    def build(cls, prefix: str) -> Tables:
        md = MetaData()
        pk = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
        schema_version = Table(
            f"{prefix}schema_version",
            md,
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("description", String(200), nullable=False),
            Column("applied_at", BigInteger, nullable=False),
        )
        events = Table(
            f"{prefix}events",
            md,
            Column("id", pk, primary_key=True, autoincrement=True),
            _id_column("event_id", nullable=False, unique=True),
            _id_column("user_id", nullable=False),
            _id_column("item_id", nullable=False),
            Column("event_type", String(MAX_EVENT_TYPE_LENGTH), nullable=False),
            Column("timestamp", BigInteger, nullable=False),
            Column("value", Float, nullable=True),
            _id_column("session_id", nullable=True),
            Column("received_at", BigInteger, nullable=False),
            Index(f"ix_{prefix}events_user_time", "user_id", "timestamp", "id"),
        )
        items = Table(
            f"{prefix}items",
            md,
            _id_column("item_id", primary_key=True),
            Column("available", Boolean, nullable=False),
            Column("metadata", JSON, nullable=False),
            _id_column("category", nullable=True),
            Column("created_at", BigInteger, nullable=False),
            Column("updated_at", BigInteger, nullable=False),
            Index(f"ix_{prefix}items_updated", "updated_at"),
        )
        impressions = Table(
            f"{prefix}impressions",
            md,
            Column("id", pk, primary_key=True, autoincrement=True),
            Column("request_id", String(64), nullable=False),
            _id_column("user_id", nullable=True, index=False),
            _id_column("item_id", nullable=False),
            Column("position", Integer, nullable=False),
            Column("model_version", String(200), nullable=False),
            Column("reason", String(500), nullable=False),
            Column("shown_at", BigInteger, nullable=False),
            Column("propensity", Float, nullable=True),
            Index(f"ix_{prefix}impressions_user", "user_id"),
        )
        return cls(md, schema_version, events, items, impressions)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` is applied once, in order, inside a transaction."""

    version: int
    description: str
    apply: Callable[[Connection, Tables], None]


def _create(*names: str) -> Callable[[Connection, Tables], None]:
    def apply(conn: Connection, tables: Tables) -> None:
        for name in names:
            getattr(tables, name).create(conn, checkfirst=True)

    return apply


def _create_events_item_index(conn: Connection, tables: Tables) -> None:
    Index(
        f"ix_{tables.events.name}_item_time", tables.events.c.item_id, tables.events.c.timestamp
    ).create(conn, checkfirst=True)


def _add_impression_propensity(conn: Connection, tables: Tables) -> None:
    """Add ``impressions.propensity`` to stores created before it existed (a store created
    since then got the column with the table)."""
    name = tables.impressions.name
    columns = {c["name"] for c in inspect(conn).get_columns(name)}
    if "propensity" not in columns:
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.execute(text(f"ALTER TABLE {quoted} ADD COLUMN propensity DOUBLE PRECISION"))


#: Every schema step in order. Append new steps; never edit an applied one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events and item catalogue", _create("events", "items")),
    Migration(2, "impression log", _create("impressions")),
    Migration(3, "index events by item and time (popularity)", _create_events_item_index),
    Migration(4, "impression propensities (guidance policies)", _add_impression_propensity),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


# -- group commit ----------------------------------------------------------------------------------
class _Pending:
    """One caller's batch waiting in a `GroupCommit`."""

    def __init__(self, batch: dict[str, EventRecord]) -> None:
        self.batch = batch
        self.wake = threading.Event()  # set when committed, or when this caller must lead
        self.lead = False
        self.stored: set[str] = set()
        self.error: BaseException | None = None


class GroupCommit:
    """Commits the batches of concurrent callers together (one transaction, one disk flush).

    A caller that finds no commit running leads: it takes the waiting batches (its own first),
    writes them with ``write`` in one transaction and hands each caller its result. Batches
    that arrived meanwhile wait for the next group, which the first of their callers leads, so
    no caller writes more than one group. Every caller returns only after the transaction
    holding its batch has committed; a failed transaction fails every batch in it.

    Args:
        write: inserts a group of batches in one transaction; returns the ids each stored.
        max_group: most batches committed together.
    """

    def __init__(
        self,
        write: Callable[[Sequence[dict[str, EventRecord]]], list[set[str]]],
        max_group: int = 64,
    ) -> None:
        self.write = write
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False  # a group is being written (the queue waits for the next one)
        self.transactions = 0
        self.batches = 0

    def commit(self, batch: dict[str, EventRecord]) -> set[str]:
        """Write one batch (committed when this returns); the ids it newly stored."""
        mine = _Pending(batch)
        with self._lock:
            self._queue.append(mine)
            if not self._leading:
                self._leading = mine.lead = True
        if not mine.lead:
            mine.wake.wait()
        if mine.lead:  # from the start, or handed over by the previous group's leader
            self._write_group()
        if mine.error is not None:
            raise mine.error
        return mine.stored

    def _write_group(self) -> None:
        with self._lock:
            group = self._queue[: self.max_group]  # the leader's own batch is the first
            del self._queue[: len(group)]
        try:
            results = self.write([p.batch for p in group])
            for pending, stored in zip(group, results, strict=True):
                pending.stored = stored
        except BaseException as exc:
            for pending in group:
                pending.error = exc
        with self._lock:
            self.transactions += 1
            self.batches += len(group)
            if self._queue:  # hand over: the next waiting caller writes the next group
                self._queue[0].lead = True
                self._queue[0].wake.set()
            else:
                self._leading = False
        for pending in group:
            pending.wake.set()


# -- the store -------------------------------------------------------------------------------------
def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid url>"


#: WAL pages after which a SQLite commit checkpoints the log itself (see `Store`)
WAL_AUTOCHECKPOINT_PAGES = 10_000


class Store:
    """Events, catalogue and impressions in one SQL database.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///path/to/file.db`` (the embedded default; the file and
            its folder are created) or ``postgresql+psycopg://user@host:5432/db``.
        table_prefix: prepended to every table name (several stores in one database; tests).
        sqlite_synchronous: SQLite's ``synchronous`` pragma in WAL mode: ``FULL`` makes every
            commit survive a power cut, ``NORMAL`` only a crash of the process (faster).
        busy_timeout_ms: how long a SQLite writer waits for another writer's lock.

    Call `migrate` once before use (`RecService` does it at start).
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str = "",
        sqlite_synchronous: SqliteSync = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if table_prefix and not table_prefix.replace("_", "").isalnum():
            raise ConfigError(
                f"table_prefix must hold letters, digits and underscores only, got {table_prefix!r}"
            )
        self.url = url
        self.table_prefix = table_prefix
        self.tables = Tables.build(table_prefix)
        self.engine = self._make_engine(url, sqlite_synchronous, busy_timeout_ms)
        self._group = GroupCommit(self._insert_events)
        self._checkpoints: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self.checkpoints = 0

    def start_checkpoints(self, interval_s: float = 1.0) -> None:
        """SQLite: copy the write-ahead log back into the database from a background thread
        every ``interval_s`` (a PASSIVE checkpoint: it waits for no reader or writer), so
        request-path commits rarely find a long log to checkpoint themselves (an fsync of the
        database while the write lock is held: 100-300 ms stalls of event posts, measured on
        ML-1M). PostgreSQL: nothing to do."""
        if self.dialect != "sqlite" or self._checkpoints is not None:
            return
        self._stop_checkpoints.clear()

        def run() -> None:
            while not self._stop_checkpoints.wait(interval_s):
                try:
                    with self.engine.connect() as conn:
                        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                except Exception:  # a busy or closed database: the next round tries again
                    logger.debug("WAL checkpoint skipped", exc_info=True)

        self._checkpoints = threading.Thread(target=run, name="recpilot-wal", daemon=True)
        self._checkpoints.start()

    # -- connection ----------------------------------------------------------------------------
    @staticmethod
    def _make_engine(url: str, synchronous: SqliteSync, busy_timeout_ms: int) -> Engine:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(
                f"invalid database URL {url!r}: expected sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST:PORT/DB"
            ) from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise ConfigError(
                    f"the SQLite store needs a file path (sqlite:///PATH.db), got {url!r}: "
                    "an in-memory database is neither durable nor shared between threads"
                )
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                # a commit that finds the WAL over this many pages copies it back into the
                # database first (with FULL: fsyncs) while holding the write lock; 10,000 pages
                # (40 MB) leaves that to `Store.start_checkpoints` in a server
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                cur.close()

            return engine
        if backend == "postgresql":
            return create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=8)
        raise ConfigError(
            f"unsupported database {backend!r} in {_masked(url)}: use sqlite:///PATH or "
            "postgresql+psycopg://..."
        )

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def _insert(self, table: Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def close(self) -> None:
        """Stop the checkpoint thread and release every pooled connection."""
        if self._checkpoints is not None:
            self._stop_checkpoints.set()
            self._checkpoints.join(timeout=10)
            self._checkpoints = None
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({_masked(self.url)!r}, table_prefix={self.table_prefix!r})"

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    # -- migrations ----------------------------------------------------------------------------
    def schema_version(self) -> int:
        """Highest migration applied (0 for an empty database)."""
        with self.engine.connect() as conn:
            if not self.engine.dialect.has_table(conn, self.tables.schema_version.name):
                return 0
            value = conn.execute(select(func.max(self.tables.schema_version.c.version))).scalar()
        return int(value or 0)

    def migrate(self) -> int:
        """Apply every pending migration in order; returns the schema version.

        Concurrent starts are safe: on PostgreSQL an advisory lock serialises them; on SQLite
        the database's write lock does.

        Raises:
            StoreError: if the database cannot be reached, or holds a newer schema than this
                version of RecPilot knows.
        """
        t = self.tables
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                        {"name": t.schema_version.name},
                    )
                t.schema_version.create(conn, checkfirst=True)
                current = int(
                    conn.execute(select(func.max(t.schema_version.c.version))).scalar() or 0
                )
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {_masked(self.url)} has schema version {current}, newer than "
                        f"the {SCHEMA_VERSION} this RecPilot knows: upgrade RecPilot"
                    )
                for migration in MIGRATIONS:
                    if migration.version <= current:
                        continue
                    migration.apply(conn, t)
                    conn.execute(
                        t.schema_version.insert().values(
                            version=migration.version,
                            description=migration.description,
                            applied_at=now_ms(),
                        )
                    )
                    logger.info(
                        "store migrated to version %d: %s", migration.version, migration.description
                    )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the store {_masked(self.url)}: {exc}") from exc
        return SCHEMA_VERSION

    def drop(self) -> None:
        """Drop every table of this store (tests, teardown). The data are gone."""
        self.tables.metadata.drop_all(self.engine)

    # -- events --------------------------------------------------------------------------------
    def add_events(self, records: Sequence[EventRecord]) -> AddResult:
        """Store events durably; an ``event_id`` already stored (or repeated) is ignored.

        Batches that arrive while another is being committed are committed together in the
        next transaction (group commit): each call still returns only once its own events are
        committed, but concurrent callers share one disk flush instead of queueing for one
        each. An ``event_id`` in two concurrent batches counts as stored for the one that came
        first and as a duplicate for the other.

        Returns:
            how many were stored, how many were duplicates, and the users that got new events.
        """
        unique: dict[str, EventRecord] = {}
        for rec in records:
            unique.setdefault(rec.event_id, rec)
        if not unique:
            return AddResult(0, len(records), frozenset())
        stored_ids = self._group.commit(unique)
        users = frozenset(unique[i].user_id for i in stored_ids)
        return AddResult(len(stored_ids), len(records) - len(stored_ids), users)

    def _insert_events(self, batches: Sequence[dict[str, EventRecord]]) -> list[set[str]]:
        """Insert several batches in one transaction; the ids each newly stored.

        A batch's ids are its own first occurrences in the group (earlier batches win)."""
        owner: dict[str, int] = {}
        rows = []
        received = now_ms()
        for n, batch in enumerate(batches):
            for event_id, r in batch.items():
                if event_id in owner:
                    continue
                owner[event_id] = n
                rows.append(
                    {
                        "event_id": r.event_id,
                        "user_id": r.user_id,
                        "item_id": r.item_id,
                        "event_type": r.event_type,
                        "timestamp": int(r.timestamp),
                        "value": r.value,
                        "session_id": r.session_id,
                        "received_at": received,
                    }
                )
        ev = self.tables.events
        stmt = (
            self._insert(ev)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(ev.c.event_id)
        )
        with self.engine.begin() as conn:
            stored = conn.execute(stmt, rows).scalars().all()
        out: list[set[str]] = [set() for _ in batches]
        for event_id in stored:
            out[owner[event_id]].add(event_id)
        return out

    def user_history(
        self, user_id: str, limit: int = 200, event_types: Sequence[str] | None = None
    ) -> list[HistoryEvent]:
        """The user's ``limit`` most recent events, oldest first (ties in arrival order)."""
        ev = self.tables.events
        stmt = (
            select(ev.c.item_id, ev.c.event_type, ev.c.timestamp)
            .where(ev.c.user_id == user_id)
            .order_by(ev.c.timestamp.desc(), ev.c.id.desc())
            .limit(limit)
        )
        if event_types:
            stmt = stmt.where(ev.c.event_type.in_(list(event_types)))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [HistoryEvent(r.item_id, r.event_type, int(r.timestamp)) for r in reversed(rows)]

    def popular_items(
        self, since: int, limit: int = 500, event_types: Sequence[str] | None = None
    ) -> list[tuple[str, int]]:
        """``(item_id, events)`` of the items with most events at or after ``since`` (ms)."""
        ev = self.tables.events
        count = func.count().label("n")
        stmt = (
            select(ev.c.item_id, count)
            .where(ev.c.timestamp >= since)
            .group_by(ev.c.item_id)
            .order_by(count.desc(), ev.c.item_id)
            .limit(limit)
        )
        if event_types:
            stmt = stmt.where(ev.c.event_type.in_(list(event_types)))
        with self.engine.connect() as conn:
            return [(r.item_id, int(r.n)) for r in conn.execute(stmt)]

    def recent_users(self, limit: int = 50, scan: int = 20_000) -> list[tuple[str, int, int]]:
        """``(user_id, events, newest timestamp)`` of the users whose events arrived last.

        Only the ``scan`` most recently received events are looked at (a bounded read however
        large the store), so a user whose last event is older than that is not listed.
        """
        ev = self.tables.events
        latest = select(ev.c.user_id, ev.c.id).order_by(ev.c.id.desc()).limit(scan).subquery()
        last_id = func.max(latest.c.id)
        order = select(latest.c.user_id).group_by(latest.c.user_id).order_by(last_id.desc())
        with self.engine.connect() as conn:
            user_ids = list(conn.execute(order.limit(limit)).scalars())
            if not user_ids:
                return []
            counts = {
                r.user_id: (int(r.n), int(r.ts))
                for r in conn.execute(
                    select(
                        ev.c.user_id,
                        func.count().label("n"),
                        func.max(ev.c.timestamp).label("ts"),
                    )
                    .where(ev.c.user_id.in_(user_ids))
                    .group_by(ev.c.user_id)
                )
            }
        return [(u, *counts[u]) for u in user_ids if u in counts]

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(self.tables.events)).scalar() or 0
            )

    def events_frame(self, event_types: Sequence[str] | None = None) -> pl.DataFrame:
        """Every stored event as a canonical event frame (`recpilot.data.schema`), in arrival
        order; ``user_id``/``item_id`` are strings."""
        ev = self.tables.events
        stmt = select(
            ev.c.user_id, ev.c.item_id, ev.c.timestamp, ev.c.event_type, ev.c.value, ev.c.session_id
        ).order_by(ev.c.id)
        if event_types:
            stmt = stmt.where(ev.c.event_type.in_(list(event_types)))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        schema = {
            "user_id": pl.String,
            "item_id": pl.String,
            "timestamp": pl.Int64,
            "event_type": pl.String,
            "value": pl.Float64,
            "session_id": pl.String,
        }
        return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")

    # -- users ---------------------------------------------------------------------------------
    def user_row_counts(self, user_id: str) -> dict[str, int]:
        """Rows that mention the user, per table."""
        t = self.tables
        with self.engine.connect() as conn:
            return {
                "events": int(
                    conn.execute(select(func.count()).where(t.events.c.user_id == user_id)).scalar()
                    or 0
                ),
                "impressions": int(
                    conn.execute(
                        select(func.count()).where(t.impressions.c.user_id == user_id)
                    ).scalar()
                    or 0
                ),
            }

    def erase_user(self, user_id: str) -> dict[str, int]:
        """Delete every row about the user in one transaction; returns rows deleted per table."""
        t = self.tables
        with self.engine.begin() as conn:
            n_events = conn.execute(delete(t.events).where(t.events.c.user_id == user_id)).rowcount
            n_impr = conn.execute(
                delete(t.impressions).where(t.impressions.c.user_id == user_id)
            ).rowcount
        return {"events": int(n_events or 0), "impressions": int(n_impr or 0)}

    # -- catalogue -----------------------------------------------------------------------------
    def put_items(self, items: Iterable[tuple[str, bool, dict[str, Any]]]) -> int:
        """Insert or update catalogue rows ``(item_id, available, metadata)``.

        ``created_at`` is kept from the first insert; the category comes from the metadata.
        Returns the number of rows written.
        """
        ts = now_ms()
        rows = {
            item_id: {
                "item_id": item_id,
                "available": bool(available),
                "metadata": dict(metadata),
                "category": category_of(metadata),
                "created_at": ts,
                "updated_at": ts,
            }
            for item_id, available, metadata in items
        }
        if not rows:
            return 0
        it = self.tables.items
        stmt = self._insert(it)
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={
                "available": stmt.excluded.available,
                "metadata": stmt.excluded.metadata,
                "category": stmt.excluded.category,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, list(rows.values()))
        return len(rows)

    def delete_item(self, item_id: str) -> None:
        """Remove an item from the catalogue: it stays as an unavailable tombstone (so it is
        never recommended, even when the model knows it), with its metadata cleared."""
        it = self.tables.items
        ts = now_ms()
        stmt = self._insert(it).values(
            item_id=item_id,
            available=False,
            metadata={},
            category=None,
            created_at=ts,
            updated_at=ts,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={"available": False, "metadata": {}, "category": None, "updated_at": ts},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def get_item(self, item_id: str) -> ItemRecord | None:
        it = self.tables.items
        with self.engine.connect() as conn:
            row = conn.execute(select(it).where(it.c.item_id == item_id)).first()
        return None if row is None else _item(row)

    def items_changed_since(self, since: int) -> list[ItemRecord]:
        """Catalogue rows updated at or after ``since`` (ms); everything for ``since=0``."""
        it = self.tables.items
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(it).where(it.c.updated_at >= since).order_by(it.c.updated_at)
            ).all()
        return [_item(r) for r in rows]

    # -- impressions ---------------------------------------------------------------------------
    def log_impressions(self, impressions: Sequence[Impression]) -> None:
        if not impressions:
            return
        rows = [
            (
                i.request_id,
                i.user_id,
                i.item_id,
                i.position,
                i.model_version[:200],
                i.reason[:500],
                i.shown_at,
                i.propensity,
            )
            for i in impressions
        ]
        # the driver's executemany straight away: impressions come in thousands a second and
        # SQLAlchemy's per-row parameter processing would hold the GIL the requests need
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self._impression_sql, rows)

    @functools.cached_property
    def _impression_sql(self) -> str:
        columns = (
            "request_id",
            "user_id",
            "item_id",
            "position",
            "model_version",
            "reason",
            "shown_at",
            "propensity",
        )
        dialect = self.engine.dialect
        quote = dialect.identifier_preparer
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if mark is None:  # pragma: no cover - the supported drivers use qmark or (py)format
            raise StoreError(f"unsupported DB-API paramstyle {dialect.paramstyle!r}")
        return (
            f"INSERT INTO {quote.format_table(self.tables.impressions)} "
            f"({', '.join(quote.quote(c) for c in columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})"
        )

    def impressions(self, user_id: str | None = None) -> list[Impression]:
        """Logged impressions (of one user when given), in logging order."""
        imp = self.tables.impressions
        stmt = select(imp).order_by(imp.c.id)
        if user_id is not None:
            stmt = stmt.where(imp.c.user_id == user_id)
        with self.engine.connect() as conn:
            return [
                Impression(
                    r.request_id,
                    r.user_id,
                    r.item_id,
                    int(r.position),
                    r.model_version,
                    r.reason,
                    int(r.shown_at),
                    None if r.propensity is None else float(r.propensity),
                )
                for r in conn.execute(stmt)
            ]


def _item(row: Any) -> ItemRecord:
    return ItemRecord(
        item_id=row.item_id,
        available=bool(row.available),
        metadata=dict(row.metadata or {}),
        category=row.category,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
    )
