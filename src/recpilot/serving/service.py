"""`RecService`: the plain-Python service behind the HTTP routes (tests drive it directly).

What it does on each call:

- **ingest**: events are committed to the `Store` before `RecService.ingest` returns; the
  users that got new events are dropped from the history cache, so their next
  recommendation reads the newest history.
- **recommend for a user**: the user's latest history (from the bounded LRU cache, else the
  store) is scored by the served model as an explicit history (the training user index is
  never used, so an erased user is served exactly like a new one); items the user has seen,
  unavailable items and, when asked, items outside a category are never returned.
- **reasons**: each recommended item names the recent history item whose one-item query
  raises its score the most over an empty history ("because you viewed X"); items no single
  history item raises are "popular now"; exploration slots hold "new item"s that the catalogue
  has and the model does not know yet.
- **fallbacks**: no usable history → the items with most events in the store recently
  ("popular now", optionally within a category), filled up from the model's empty-history
  scores; history items the model does not know are ignored with a warning.
- **impressions**: every list served is logged (request id, user, item, position, reason,
  model version) by a background writer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recpilot.config import ServiceSettings
from recpilot.errors import UnknownIdError
from recpilot.models.base import Query
from recpilot.serving.registry import ModelHolder, ServedModel
from recpilot.serving.store import (
    AddResult,
    EventRecord,
    HistoryEvent,
    Impression,
    ItemRecord,
    Store,
    now_ms,
)
from recpilot.types import UNKNOWN

logger = logging.getLogger(__name__)

POPULAR = "popular now"
NEW_ITEM = "new item"
#: How a reason names the user's action, by event type (others: "interacted with").
VERBS = {
    "view": "viewed",
    "click": "clicked",
    "cart": "added to cart",
    "purchase": "bought",
    "rating": "rated",
    "interaction": "interacted with",
}
#: A history item "explains" a recommendation when its one-item query raises the item's score
#: over the empty-history score by more than this.
INFLUENCE_EPS = 1e-5


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecommendedItem:
    """One recommended item.

    ``score`` orders the items of one list (model score; event count for "popular now" items
    from the store; 0 for exploration slots); ``because_item_id`` is the history item named by
    the reason, if any.
    """

    item_id: str
    score: float
    reason: str
    because_item_id: str | None = None


@dataclass(frozen=True)
class Recommendations:
    """A list served to a user (``user_id`` None: anonymous) by one model version."""

    user_id: str | None
    model_version: str
    items: list[RecommendedItem]
    request_id: str
    ignored_items: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int


# -- history cache ---------------------------------------------------------------------------------
class HistoryCache:
    """Bounded LRU of user histories, safe against a read racing an invalidation.

    A reader takes a `token` before reading the store and offers its result with `put`; the
    result is dropped when the user was invalidated after the token was taken (the read may
    predate the new events). Invalidation stamps are kept for at most ``max_stamps`` users;
    past that they are cleared and every older token is refused.

    Args:
        max_users: users kept (0 disables the cache).
        ttl_seconds: entries older than this are misses (None: no expiry).
    """

    def __init__(
        self, max_users: int, ttl_seconds: float | None = None, max_stamps: int = 100_000
    ) -> None:
        self.max_users = max_users
        self.ttl_seconds = ttl_seconds
        self.max_stamps = max_stamps
        self._entries: OrderedDict[str, tuple[float, tuple[HistoryEvent, ...]]] = OrderedDict()
        self._stamps: dict[str, int] = {}
        self._epoch = 0
        self._floor = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> tuple[HistoryEvent, ...] | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and (
                self.ttl_seconds is None or time.monotonic() - entry[0] < self.ttl_seconds
            ):
                self._entries.move_to_end(user_id)
                self.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[user_id]
            self.misses += 1
            return None

    def token(self) -> int:
        with self._lock:
            return self._epoch

    def put(self, user_id: str, history: tuple[HistoryEvent, ...], token: int) -> None:
        if self.max_users == 0:
            return
        with self._lock:
            if token < self._floor or self._stamps.get(user_id, -1) > token:
                return  # invalidated while the caller was reading: its history may be stale
            self._entries[user_id] = (time.monotonic(), history)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)

    def invalidate(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            self._epoch += 1
            for user_id in user_ids:
                self._entries.pop(user_id, None)
                self._stamps[user_id] = self._epoch
            if len(self._stamps) > self.max_stamps:
                self._stamps.clear()
                self._floor = self._epoch + 1


# -- catalogue -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CatalogueSnapshot:
    """The catalogue rows known to this process (items absent from it are available)."""

    items: dict[str, ItemRecord]
    generation: int
    max_updated: int

    def available(self, item_id: str) -> bool:
        rec = self.items.get(item_id)
        return rec is None or rec.available

    def category(self, item_id: str) -> str | None:
        rec = self.items.get(item_id)
        return None if rec is None else rec.category

    def label(self, item_id: str) -> str:
        """The item's title (or name) from its metadata, else its id."""
        rec = self.items.get(item_id)
        if rec is not None:
            for key in ("title", "name"):
                value = rec.metadata.get(key)
                if isinstance(value, str) and value:
                    return value
        return item_id


@dataclass(frozen=True)
class ModelCatalogue:
    """A catalogue snapshot in one model's item indices."""

    version: str
    generation: int
    available: np.ndarray  # (I,) bool
    by_category: dict[str, np.ndarray]  # category -> item indices (available ones)
    new_items: tuple[ItemRecord, ...]  # available, unknown to the model, newest first
    available_idx: np.ndarray | None  # indices of available items; None: every item

    def candidates(self, category: str | None) -> np.ndarray | None:
        """Item indices the model may return (None: every item)."""
        if category is not None:
            return self.by_category.get(category, np.empty(0, dtype=np.int64))
        return self.available_idx


class ImpressionWriter:
    """Buffers impressions and writes them from a background thread.

    Args:
        store: where impressions go.
        flush_seconds: longest time an impression waits in the buffer.
        max_buffer: flush at once when this many are waiting.
    """

    def __init__(self, store: Store, flush_seconds: float = 1.0, max_buffer: int = 5000) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self._buffer: list[Impression] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, impressions: Sequence[Impression]) -> None:
        with self._lock:
            self._buffer.extend(impressions)
            full = len(self._buffer) >= self.max_buffer
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="recpilot-impressions", daemon=True
                )
                self._thread.start()
        if full:
            self._wake.set()

    def drop_user(self, user_id: str) -> None:
        """Forget buffered impressions of one user (erasure)."""
        with self._lock:
            self._buffer = [i for i in self._buffer if i.user_id != user_id]

    def flush(self) -> None:
        """Write everything buffered now."""
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return
            try:
                self.store.log_impressions(batch)
            except Exception:
                logger.exception("could not log %d impressions; they are dropped", len(batch))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


@dataclass
class ServiceStats:
    """Counters exposed on /metrics."""

    events_stored: int = 0
    events_duplicate: int = 0
    recommendations: int = 0
    fallbacks: int = 0
    unknown_history_items: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


# -- the service -----------------------------------------------------------------------------------
class RecService:
    """Real-time recommendations over an event store and a hot-swappable model.

    Args:
        store: events, catalogue and impressions.
        models: the served model (see `ModelHolder`).
        settings: limits, cache sizes, fallbacks.

    Call `start` (migrate the store, load the model and the catalogue) before use and
    `close` at the end, or build a started one with `RecService.open`. Every method is
    thread-safe.
    """

    def __init__(self, store: Store, models: ModelHolder, settings: ServiceSettings) -> None:
        self.store = store
        self.models = models
        self.settings = settings
        self.cache = HistoryCache(settings.cache_users, settings.cache_ttl_seconds)
        self.impressions = ImpressionWriter(store, settings.impression_flush_seconds)
        self.stats = ServiceStats()
        self._catalogue = CatalogueSnapshot({}, 0, 0)
        self._catalogue_checked = 0.0
        self._catalogue_lock = threading.Lock()
        self._model_catalogue: ModelCatalogue | None = None
        self._trending_cache: tuple[float, list[tuple[str, int]]] = (-np.inf, [])
        self._warned: set[tuple[str, str]] = set()
        self._warned_lock = threading.Lock()
        self._popular_lock = threading.Lock()
        self.started = False

    @classmethod
    def open(cls, settings: ServiceSettings) -> RecService:
        """Build the store and model holder that ``settings`` name, and start the service."""
        store = Store(
            settings.db,
            table_prefix=settings.table_prefix,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        service = cls(store, ModelHolder(settings.artifact), settings)
        try:
            service.start()
        except BaseException:
            store.close()
            raise
        return service

    def start(self) -> None:
        """Migrate the store, load the model and read the catalogue."""
        version = self.store.migrate()
        served = self.models.current if self.models.loaded else self.models.load()
        self._refresh_catalogue(force=True)
        self.started = True
        logger.info(
            "service ready: model %s, store %s (schema %d, %s)",
            served.version,
            self.store,
            version,
            self.store.dialect,
        )

    def close(self) -> None:
        """Write pending impressions and release the store."""
        self.impressions.close()
        self.store.close()
        self.started = False

    # -- model -------------------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        return self.models.current.version

    def reload(self, version: str | None = None) -> tuple[str | None, str]:
        """Load the current (or given registry) model version and swap it in atomically.

        Requests in flight finish on the model they started with; none fails.
        Returns ``(previous version, new version)``.
        """
        return self.models.reload(version)

    # -- events ------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[EventRecord]) -> IngestResult:
        """Store events durably (committed before returning); repeated event ids store once."""
        result: AddResult = self.store.add_events(events)
        self.cache.invalidate(result.users)
        self.stats.add(events_stored=result.stored, events_duplicate=result.duplicates)
        return IngestResult(len(events), result.stored, result.duplicates)

    def history(self, user_id: str) -> tuple[HistoryEvent, ...]:
        """The user's latest history (oldest first), from the cache or the store."""
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached
        token = self.cache.token()
        history = tuple(
            self.store.user_history(
                user_id, self.settings.history_limit, self.settings.history_event_types
            )
        )
        self.cache.put(user_id, history, token)
        return history

    # -- users -------------------------------------------------------------------------------------
    def erase_user(self, user_id: str) -> dict[str, int]:
        """Delete every stored row and cached state about a user; returns rows deleted.

        Afterwards the user is served exactly like a new one. The user id is not logged.
        """
        self.impressions.drop_user(user_id)
        counts = self.store.erase_user(user_id)
        self.cache.invalidate([user_id])
        logger.info(
            "erased a user: %d events, %d impressions", counts["events"], counts["impressions"]
        )
        return counts

    # -- catalogue ---------------------------------------------------------------------------------
    def put_items(self, items: Sequence[tuple[str, bool, dict[str, Any]]]) -> int:
        """Insert or update catalogue items ``(item_id, available, metadata)``."""
        n = self.store.put_items(items)
        self._refresh_catalogue(force=True)
        return n

    def delete_item(self, item_id: str) -> None:
        """Take an item out of the catalogue: it is never recommended again."""
        self.store.delete_item(item_id)
        self._refresh_catalogue(force=True)

    def catalogue(self) -> CatalogueSnapshot:
        """The catalogue as known now (re-read when older than the refresh interval)."""
        self._refresh_catalogue()
        return self._catalogue

    def _refresh_catalogue(self, force: bool = False) -> None:
        interval = self.settings.catalogue_refresh_seconds
        if not force and time.monotonic() - self._catalogue_checked < interval:
            return
        with self._catalogue_lock:
            if not force and time.monotonic() - self._catalogue_checked < interval:
                return
            old = self._catalogue
            # re-read a minute of overlap: other replicas' clocks and commits lag a little
            since = max(0, old.max_updated - 60_000) if old.generation else 0
            self._catalogue_checked = time.monotonic()
            changed = self.store.items_changed_since(since)
            fresh = [r for r in changed if old.items.get(r.item_id) != r]
            if not fresh and old.generation:
                return
            items = dict(old.items)
            items.update((r.item_id, r) for r in fresh)
            max_updated = max([old.max_updated, *(r.updated_at for r in fresh)])
            self._catalogue = CatalogueSnapshot(items, old.generation + 1, max_updated)

    def _model_view(self, served: ServedModel) -> ModelCatalogue:
        snap = self.catalogue()
        view = self._model_catalogue
        if (
            view is not None
            and view.version == served.version
            and view.generation == snap.generation
        ):
            return view
        n = served.model.n_items
        available = np.ones(n, dtype=bool)
        by_category: dict[str, list[int]] = {}
        new_items: list[ItemRecord] = []
        new_since = now_ms() - int(self.settings.new_item_hours * 3_600_000)
        for rec in snap.items.values():
            idx = served.item_index(rec.item_id)
            if idx == UNKNOWN:
                if rec.available and rec.created_at >= new_since:
                    new_items.append(rec)
                continue
            if not rec.available:
                available[idx] = False
            elif rec.category is not None:
                by_category.setdefault(rec.category, []).append(idx)
        new_items.sort(key=lambda r: (-r.created_at, r.item_id))
        view = ModelCatalogue(
            served.version,
            snap.generation,
            available,
            {c: np.asarray(sorted(v), dtype=np.int64) for c, v in by_category.items()},
            tuple(new_items),
            None if available.all() else np.flatnonzero(available),
        )
        self._model_catalogue = view
        return view

    # -- recommendations ---------------------------------------------------------------------------
    def recommend_for_user(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        category: str | None = None,
    ) -> Recommendations:
        """Top-``k`` for a user from their latest stored history."""
        history = self.history(user_id)
        return self._recommend(user_id, list(history), k, exclude_seen, category)

    def recommend_for_history(
        self,
        item_ids: Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        category: str | None = None,
        user_id: str | None = None,
        event_type: str = "view",
    ) -> Recommendations:
        """Top-``k`` for an anonymous session (or a new user) described by ``item_ids``
        (oldest first); nothing is read from or written to the user's stored events."""
        history = [HistoryEvent(str(i), event_type, 0) for i in item_ids]
        return self._recommend(user_id, history, k, exclude_seen, category)

    def similar_items(self, item_id: str, k: int = 10) -> Recommendations:
        """Items related to ``item_id`` by the model's item-item scores (one-item query).

        An item the model does not know (added after training) gets the popular items of its
        category, or the popular items.

        Raises:
            UnknownIdError: if neither the model nor the catalogue knows the item.
        """
        served = self.models.current
        view = self._model_view(served)
        snap = self.catalogue()
        idx = served.item_index(item_id)
        request_id = uuid.uuid4().hex
        if idx == UNKNOWN:
            if item_id not in snap.items:
                raise UnknownIdError(
                    f"unknown item id {item_id!r}: neither the model nor the catalogue knows it"
                )
            category = snap.category(item_id)
            items = self._popular(served, view, snap, k, {item_id}, category)
            result = Recommendations(None, served.version, items, request_id)
            self._log_impressions(result)
            return result
        ids, scores = served.model.recommend(
            Query.from_histories([[idx]]), k=k, exclude_seen=True, candidates=view.candidates(None)
        )
        keep = ids[0] >= 0
        rec_idx, rec_scores = ids[0][keep], scores[0][keep]
        base = served.model.score(Query.from_histories([[]]))[0]
        reason = f"similar to {snap.label(item_id)}"
        items = [
            RecommendedItem(i, float(s), reason, item_id)
            if s - base[j] > INFLUENCE_EPS
            else RecommendedItem(i, float(s), POPULAR)
            for i, j, s in zip(served.item_ids(rec_idx), rec_idx, rec_scores, strict=True)
        ]
        result = Recommendations(None, served.version, items, request_id)
        self._log_impressions(result)
        return result

    def _recommend(
        self,
        user_id: str | None,
        history: list[HistoryEvent],
        k: int,
        exclude_seen: bool,
        category: str | None,
    ) -> Recommendations:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        served = self.models.current  # this request uses this model to the end
        view = self._model_view(served)
        snap = self.catalogue()
        request_id = uuid.uuid4().hex

        indices = [served.item_index(e.item_id) for e in history]
        ignored = list(
            dict.fromkeys(e.item_id for e, i in zip(history, indices, strict=True) if i < 0)
        )
        if ignored:
            self._warn_unknown(served.version, ignored)
        known = [(e, i) for e, i in zip(history, indices, strict=True) if i >= 0]
        seen_ids = {e.item_id for e in history} if exclude_seen else set()

        items: list[RecommendedItem] = []
        if known:
            items = self._personalised(served, view, snap, known, k, exclude_seen, category)
        if len(items) < k:
            if not items:
                self.stats.add(fallbacks=1)
            taken = seen_ids | {i.item_id for i in items}
            items += self._popular(served, view, snap, k - len(items), taken, category)
        items = self._with_new_items(view, items, k, seen_ids, category)
        self.stats.add(recommendations=1)
        result = Recommendations(user_id, served.version, items, request_id, ignored)
        self._log_impressions(result)
        return result

    def _warn_unknown(self, version: str, ignored: list[str]) -> None:
        """Warn once per item and model version (items added after training recur often)."""
        self.stats.add(unknown_history_items=len(ignored))
        with self._warned_lock:
            fresh = [i for i in ignored if (version, i) not in self._warned]
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned.update((version, i) for i in fresh)
        if fresh:
            logger.warning(
                "ignored %d history item(s) the model %s does not know (warned once each), e.g. %s",
                len(fresh),
                version,
                fresh[:3],
            )

    def _personalised(
        self,
        served: ServedModel,
        view: ModelCatalogue,
        snap: CatalogueSnapshot,
        known: list[tuple[HistoryEvent, int]],
        k: int,
        exclude_seen: bool,
        category: str | None,
    ) -> list[RecommendedItem]:
        model = served.model
        hist = np.asarray([i for _, i in known], dtype=np.int64)
        candidates = view.candidates(category)
        if candidates is not None and len(candidates) == 0:
            return []
        ids, scores = model.recommend(
            Query.from_histories([hist]), k=k, exclude_seen=exclude_seen, candidates=candidates
        )
        keep = ids[0] >= 0
        rec_idx, rec_scores = ids[0][keep], scores[0][keep]
        if len(rec_idx) == 0:
            return []
        # reasons: the recent history item whose one-item query raises each item the most
        recent: dict[int, HistoryEvent] = {}
        for event, idx in reversed(known):
            if idx not in recent:
                recent[idx] = event
                if len(recent) == self.settings.reason_history_items:
                    break
        rows = [np.empty(0, dtype=np.int64)] + [np.asarray([i]) for i in recent]
        single = model.score(Query.from_histories(rows))[:, rec_idx]  # (1 + m, n)
        influence = single[1:] - single[0]  # (m, n)
        best = influence.argmax(axis=0)  # (n,)
        sources = list(recent.values())
        out = []
        for col, (item_id, score) in enumerate(
            zip(served.item_ids(rec_idx), rec_scores, strict=True)
        ):
            if influence[best[col], col] > INFLUENCE_EPS:
                src = sources[best[col]]
                verb = VERBS.get(src.event_type, "interacted with")
                reason = f"because you {verb} {snap.label(src.item_id)}"
                out.append(RecommendedItem(item_id, float(score), reason, src.item_id))
            else:
                out.append(RecommendedItem(item_id, float(score), POPULAR))
        return out

    def _trending(self) -> list[tuple[str, int]]:
        stamp, items = self._trending_cache
        if time.monotonic() - stamp < self.settings.popular_refresh_seconds:
            return items
        with self._popular_lock:
            stamp, items = self._trending_cache
            if time.monotonic() - stamp < self.settings.popular_refresh_seconds:
                return items
            since = now_ms() - int(self.settings.popular_window_hours * 3_600_000)
            items = self.store.popular_items(
                since, limit=1000, event_types=self.settings.history_event_types
            )
            self._trending_cache = (time.monotonic(), items)
            return items

    def _popular(
        self,
        served: ServedModel,
        view: ModelCatalogue,
        snap: CatalogueSnapshot,
        k: int,
        taken: set[str],
        category: str | None,
    ) -> list[RecommendedItem]:
        """Most events in the store recently, then the model's empty-history order."""
        out: list[RecommendedItem] = []
        chosen = set(taken)
        for item_id, count in self._trending():
            if len(out) == k:
                return out
            if item_id in chosen or not snap.available(item_id):
                continue
            if category is not None and snap.category(item_id) != category:
                continue
            out.append(RecommendedItem(item_id, float(count), POPULAR))
            chosen.add(item_id)
        need = k - len(out)
        candidates = view.candidates(category)
        if need <= 0 or (candidates is not None and len(candidates) == 0):
            return out
        ids, scores = served.model.recommend(
            Query.from_histories([[]]),
            k=need + len(chosen),
            exclude_seen=False,
            candidates=candidates,
        )
        keep = ids[0] >= 0
        for item_id, score in zip(served.item_ids(ids[0][keep]), scores[0][keep], strict=True):
            if item_id in chosen:
                continue
            out.append(RecommendedItem(item_id, float(score), POPULAR))
            chosen.add(item_id)
            if len(out) == k:
                break
        return out

    def _with_new_items(
        self,
        view: ModelCatalogue,
        items: list[RecommendedItem],
        k: int,
        seen: set[str],
        category: str | None,
    ) -> list[RecommendedItem]:
        slots = min(self.settings.new_item_slots, k)
        if slots == 0 or not view.new_items:
            return items
        present = {i.item_id for i in items}
        fresh = [
            RecommendedItem(r.item_id, 0.0, NEW_ITEM)
            for r in view.new_items
            if r.item_id not in seen
            and r.item_id not in present
            and (category is None or r.category == category)
        ][:slots]
        if not fresh:
            return items
        return items[: k - len(fresh)] + fresh

    def _log_impressions(self, result: Recommendations) -> None:
        if not self.settings.log_impressions or not result.items:
            return
        shown = now_ms()
        self.impressions.add(
            [
                Impression(
                    result.request_id,
                    result.user_id,
                    item.item_id,
                    position,
                    result.model_version,
                    item.reason,
                    shown,
                )
                for position, item in enumerate(result.items)
            ]
        )

    # -- health ------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Whether the model is loaded and the store answers."""
        store_ok = self.store.ping()
        loaded = self.models.loaded
        return {
            "status": "ok" if store_ok and loaded else "degraded",
            "model_loaded": loaded,
            "model_version": self.models.current.version if loaded else None,
            "store": self.store.dialect,
            "store_ok": store_ok,
        }


__all__ = [
    "HistoryCache",
    "IngestResult",
    "RecService",
    "Recommendations",
    "RecommendedItem",
]
