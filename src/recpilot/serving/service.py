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
- **guidance**: a request may name a policy (`recpilot.guide.policy`, from the settings'
  ``policies`` file, re-read when it changes); its stages re-rank the model's scores
  (filters, promotion, diversity, calibration, exploration) and items they place carry the
  stage's reason ("promoted", "to diversify", "exploring something new") and a propensity.
- **impressions**: every list served is logged (request id, user, item, position, reason,
  model version, propensity) by a background writer.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from recpilot.config import ServiceSettings
from recpilot.errors import RecPilotError, UnknownIdError
from recpilot.guide.policy import Pipeline, PolicyConfig, PolicyRegistry
from recpilot.guide.similarity import CategorySimilarity, ItemSimilarity, similarity_from_model
from recpilot.guide.stages import BanditState, GuideRequest, ItemSpace
from recpilot.models.base import Query, top_k
from recpilot.serving.behaviour import BehaviourHolder, HistoryItem, Predictions
from recpilot.serving.behaviour import predict as predict_behaviour
from recpilot.serving.registry import ModelHolder, ServedModel
from recpilot.serving.retrieval import Candidates, Retriever, vector_view
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

if TYPE_CHECKING:
    from recpilot.content.encoder import ItemEncoder

logger = logging.getLogger(__name__)
T = TypeVar("T")

POPULAR = "popular now"
#: The policy name reported for a policy given with the request rather than by name.
INLINE_POLICY = "inline"
NEW_ITEM = "new item"
#: Event type of onboarding choices (items a user without events picked).
CHOSEN_EVENT = "chosen"
#: How a reason names the user's action, by event type (others: "interacted with").
VERBS = {
    "view": "viewed",
    "click": "clicked",
    "cart": "added to cart",
    "purchase": "bought",
    "rating": "rated",
    "interaction": "interacted with",
    CHOSEN_EVENT: "chose",
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
    propensity: float = 1.0


@dataclass(frozen=True)
class Recommendations:
    """A list served to a user (``user_id`` None: anonymous) by one model version, re-ranked
    by ``policy`` (None: the model's own order)."""

    user_id: str | None
    model_version: str
    items: list[RecommendedItem]
    request_id: str
    ignored_items: list[str] = field(default_factory=list)
    policy: str | None = None


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int


# -- history cache ---------------------------------------------------------------------------------
#: a cached history: exact tuples ``(item_id, event_type, timestamp)``, oldest first. Plain
#: tuples of strings and ints are untracked by Python's cyclic garbage collector (named tuples
#: and dataclasses are not), so thousands of cached histories add nothing to its full
#: collections, which would otherwise stall every request in flight.
RawHistory = tuple[tuple[str, str, int], ...]


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
        self._entries: OrderedDict[str, tuple[float, RawHistory]] = OrderedDict()
        self._stamps: dict[str, int] = {}
        self._epoch = 0
        self._floor = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, entry: tuple[float, RawHistory] | None) -> bool:
        return entry is not None and (
            self.ttl_seconds is None or time.monotonic() - entry[0] < self.ttl_seconds
        )

    def get(self, user_id: str) -> RawHistory | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and self._live(entry):
                self._entries.move_to_end(user_id)
                self.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[user_id]
            self.misses += 1
            return None

    def contains(self, user_id: str) -> bool:
        """Whether `get` would answer from the cache now (no hit or miss counted)."""
        with self._lock:
            return self._live(self._entries.get(user_id))

    def token(self) -> int:
        with self._lock:
            return self._epoch

    def put(self, user_id: str, history: RawHistory, token: int) -> None:
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

    def blocked(self, category: str | None, seen: np.ndarray | None) -> np.ndarray:
        """``(I,)`` bool: items a list may not hold — unavailable, outside ``category`` when
        one is given, and the ``seen`` item indices when given."""
        blocked = ~self.available
        if category is not None:
            allowed = np.zeros(len(blocked), dtype=bool)
            allowed[self.by_category.get(category, np.empty(0, dtype=np.int64))] = True
            blocked = blocked | ~allowed
        if seen is not None:
            blocked[seen] = True
        return blocked


class SingleItemScores:
    """Bounded LRU of one model's score rows for one-item queries (and the empty query).

    The reasons ("because you viewed X") compare each listed item's score under the one-item
    query of a recent history item with its score under the empty query. Those rows depend on
    the model and the item only, so they are computed once per model and item instead of once
    per request (one forward pass of a sequence model saved per request). A different model
    object (a reload, or items added online) empties the cache.

    Args:
        max_bytes: memory budget of the cached rows.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._model: object | None = None
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def rows(self, model: Any, items: Sequence[int]) -> np.ndarray:
        """``(1 + len(items), n_items)``: the empty query's scores, then each item's."""
        keys = [EMPTY_QUERY, *items]
        n_items = int(model.n_items)
        capacity = max(8, self.max_bytes // max(1, 4 * n_items))
        with self._lock:
            if self._model is not model:
                self._model, self._rows = model, OrderedDict()
            found = {k: self._rows[k] for k in keys if k in self._rows}
            for k in found:
                self._rows.move_to_end(k)
            missing = [k for k in keys if k not in found]
            self.hits += len(found)
            self.misses += len(missing)
        if missing:
            queries = [np.empty(0, dtype=np.int64) if k == EMPTY_QUERY else [k] for k in missing]
            fresh = model.score(Query.from_histories(queries))
            with self._lock:
                if self._model is model:
                    for k, row in zip(missing, fresh, strict=True):
                        self._rows[k] = row
                        found[k] = row
                    while len(self._rows) > capacity:
                        self._rows.popitem(last=False)
                else:
                    found.update(zip(missing, fresh, strict=True))
        return np.stack([found[k] for k in keys])


EMPTY_QUERY = -1  # the key of the empty query's row in `SingleItemScores`


class UserScores:
    """Bounded LRU of each recent user's score row (or, with an ANN index, their retrieved
    candidates), valid while their history is unchanged.

    A user's scores depend on the model and the history only. The history cache hands out the
    same tuple object until an event of the user invalidates it, so a row stored with that
    object (and the model object) is exact for as long as both are the ones in use: a repeated
    request (a page reload, a second widget) skips the model pass, and the user's next event
    makes the next request compute afresh.

    Args:
        max_bytes: memory budget of the rows (0 turns the cache off).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[str, tuple[object, object, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, user_id: str, model: object, history: object) -> Any:
        """The value stored for this user, model object and history object, else None."""
        with self._lock:
            entry = self._rows.get(user_id)
            if entry is not None and entry[0] is model and entry[1] is history:
                self._rows.move_to_end(user_id)
                self.hits += 1
                return entry[2]
            self.misses += 1
            return None

    def put(self, user_id: str, model: object, history: object, row: Any) -> None:
        """Keep ``row`` (an array, or anything with ``nbytes``) for this user's history."""
        capacity = self.max_bytes // max(1, int(row.nbytes))
        if capacity < 1:
            return
        if isinstance(row, np.ndarray):
            row.setflags(write=False)  # shared between requests: nobody may change it
        with self._lock:
            self._rows[user_id] = (model, history, row)
            self._rows.move_to_end(user_id)
            while len(self._rows) > capacity:
                self._rows.popitem(last=False)

    def drop(self, user_id: str) -> None:
        with self._lock:
            self._rows.pop(user_id, None)


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
        self.policies = PolicyRegistry(settings.policies, settings.policies_check_seconds)
        self._guides: dict[tuple[str, int, str, int], Pipeline] = {}
        self._spaces: dict[tuple[str, int], ItemSpace] = {}
        self._bandit: tuple[str, BanditState] | None = None
        self._guide_lock = threading.Lock()
        self.behaviour = BehaviourHolder(settings.behaviour_artifact)
        self._content_lock = threading.Lock()
        self._encoder: ItemEncoder | None = None
        self._text_items: set[str] = set()  # items the served model knows from text alone
        self._retrievers: dict[str, Retriever | None] = {}  # model version -> ANN retriever
        self.single_scores = SingleItemScores()  # reasons: one-item query rows, per model
        self.user_scores = UserScores(int(settings.score_cache_mb * 2**20))
        self._retriever_lock = threading.Lock()
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
        self.store.start_checkpoints()
        served = self.models.current if self.models.loaded else self.models.load()
        if not self.behaviour.loaded:
            self.behaviour.load(served.path)
        self._refresh_catalogue(force=True)
        self._sync_text_items()
        self._retriever(served)  # a large catalogue's ANN index: built or read now, not later
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
        Returns ``(previous version, new version)``. The behaviour model (``behaviour/`` of
        the new version, or ``behaviour_artifact``) is reloaded with it.
        """
        # the new version's ANN index (if it uses one) is built before the swap: requests keep
        # the old model until the new one can answer at full speed
        previous, new = self.models.reload(version, prepare=self._retriever)
        self._sync_text_items()
        try:
            self.behaviour.load(self.models.current.path)
        except RecPilotError as exc:  # the recommendation model is in; keep the old behaviour one
            logger.error("behaviour model not reloaded (the previous one stays): %s", exc)
        return previous, new

    # -- behaviour probabilities ---------------------------------------------------------------------
    def predict(
        self,
        user_id: str | None,
        item_ids: Sequence[str],
        behaviours: Sequence[str] | None = None,
        history: Sequence[HistoryItem] | None = None,
    ) -> Predictions:
        """Calibrated behaviour probabilities of candidate items for one user, one batch.

        Args:
            user_id: the user (its stored history is read unless ``history`` is given).
            item_ids: candidates; ids the behaviour model does not know are skipped and listed
                in ``unknown_items``.
            behaviours: which behaviours (default: every one the model predicts).
            history: an explicit history (anonymous sessions, new users), oldest first.

        Raises:
            NoBehaviourModelError: no behaviour model is loaded.
            BehaviourRequestError: a behaviour the model does not predict.
        """
        served = self.behaviour.current
        if history is None:
            stored = self.history(user_id) if user_id is not None else ()
            history = [HistoryItem(e.item_id, e.event_type, e.timestamp) for e in stored]
        return predict_behaviour(served, user_id, item_ids, history, behaviours, now_ms())

    # -- events ------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[EventRecord]) -> IngestResult:
        """Store events durably (committed before returning); repeated event ids store once."""
        result: AddResult = self.store.add_events(events)
        self.cache.invalidate(result.users)
        self._record_clicks(events)
        self.stats.add(events_stored=result.stored, events_duplicate=result.duplicates)
        return IngestResult(len(events), result.stored, result.duplicates)

    def history(self, user_id: str) -> tuple[HistoryEvent, ...]:
        """The user's latest history (oldest first), from the cache or the store."""
        return tuple(map(HistoryEvent._make, self._stored_history(user_id)))

    def _stored_history(self, user_id: str) -> RawHistory:
        """The user's latest history as plain tuples, the object the cache holds (the same
        object until an event of the user invalidates it)."""
        cached = self.cache.get(user_id)
        if cached is not None:
            return cached
        token = self.cache.token()
        raw: RawHistory = tuple(
            (e.item_id, e.event_type, e.timestamp)
            for e in self.store.user_history(
                user_id, self.settings.history_limit, self.settings.history_event_types
            )
        )
        self.cache.put(user_id, raw, token)
        return raw

    # -- users -------------------------------------------------------------------------------------
    def erase_user(self, user_id: str) -> dict[str, int]:
        """Delete every stored row and cached state about a user; returns rows deleted.

        Afterwards the user is served exactly like a new one. The user id is not logged.
        """
        self.impressions.drop_user(user_id)
        counts = self.store.erase_user(user_id)
        self.cache.invalidate([user_id])
        self.user_scores.drop(user_id)
        logger.info(
            "erased a user: %d events, %d impressions", counts["events"], counts["impressions"]
        )
        return counts

    # -- catalogue ---------------------------------------------------------------------------------
    def put_items(self, items: Sequence[tuple[str, bool, dict[str, Any]]]) -> int:
        """Insert or update catalogue items ``(item_id, available, metadata)``."""
        n = self.store.put_items(items)
        self._add_text_items(items)
        self._refresh_catalogue(force=True)
        return n

    # -- content: items the model learns from their text alone -------------------------------------
    def _add_text_items(self, items: Sequence[tuple[str, bool, dict[str, Any]]]) -> int:
        """Give the served model the catalogue items it does not know, from their text.

        Only for models that read item text (a hybrid sequence model or text-kNN, with
        ``add_items``); the model is copied, grown and swapped in, so requests in flight keep
        the model they started with. Returns the number of items added.
        """
        served = self.models.current
        model = served.model
        text_dim = getattr(model, "text_dim", None)
        if not text_dim or self.settings.text_encoder is None:
            return 0
        from recpilot.content.encoder import encoder_from_id
        from recpilot.content.text import NO_TIME, item_release_time, item_text

        new = [
            (item_id, item_text(metadata))
            for item_id, _, metadata in items
            if served.item_index(item_id) == UNKNOWN and item_text(metadata)
        ]
        if not new:
            return 0
        with self._content_lock:
            if self._encoder is None:
                self._encoder = encoder_from_id(self.settings.text_encoder)
            if self._encoder.dim != text_dim:
                logger.error(
                    "items not added to the model: the encoder %s gives %d-d vectors, the model "
                    "reads %d-d text vectors (set text_encoder to the one it was trained with)",
                    self._encoder.encoder_id,
                    self._encoder.dim,
                    text_dim,
                )
                return 0
            vectors = self._encoder.encode([t for _, t in new])
            served = self.models.current
            grown = copy.deepcopy(served.model)
            try:
                idx = cast(Any, grown).add_items([i for i, _ in new], vectors)
                if getattr(getattr(grown, "config", None), "freshness", False):
                    # the item-age bias counts from a release / addition time in the metadata;
                    # an item without one stays "new" until the model is retrained
                    released = {i: item_release_time(md) for i, _, md in items}
                    times = np.array([released[i] for i, _ in new], dtype=np.int64)
                    known = times != NO_TIME
                    cast(Any, grown).observe_items(np.asarray(idx)[known], times[known])
            except RecPilotError as exc:
                logger.error("items not added to the model %s: %s", served.version, exc)
                return 0
            if not self.models.swap_model(served, grown):
                return 0  # a reload won the race; its model is synced on reload
            self._text_items.update(i for i, _ in new)
            # index-keyed caches (model view, item space) must be rebuilt for the grown model
            with self._catalogue_lock:
                snap = self._catalogue
                self._catalogue = replace(snap, generation=snap.generation + 1)
            self._model_catalogue = None
        logger.info("added %d item(s) to model %s from their text", len(new), served.version)
        return len(new)

    def _sync_text_items(self) -> None:
        """After loading a model: add the catalogue's items it does not know, from their text."""
        records = [(r.item_id, r.available, r.metadata) for r in self._catalogue.items.values()]
        if records:
            self._text_items.clear()
            self._add_text_items(records)
            self._model_catalogue = None

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
    def answers_quickly(self, user_id: str | None = None) -> bool:
        """Whether a recommendation request can be computed without waiting on anything: the
        user's history is cached (or none is read) and no ANN index is searched (a large
        catalogue's search takes milliseconds, and faiss releases the GIL, so other requests
        overlap with it on a worker thread). The HTTP routes compute such requests on the
        event loop and send the others to the thread pool."""
        if self._retrievers.get(self.models.current.version) is not None:
            return False
        return user_id is None or self.cache.contains(user_id)

    def recommend_for_user(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        category: str | None = None,
        policy: str | PolicyConfig | None = None,
        chosen_items: Sequence[str] = (),
        chosen_categories: Sequence[str] = (),
    ) -> Recommendations:
        """Top-``k`` for a user from their latest stored history, re-ranked by ``policy``: a
        name from the policy file, a policy given with the request, or None (the file's
        default).

        A user without a usable history is served from onboarding preferences when given:
        ``chosen_items`` become the query ("because you chose X"), else the popular items of
        ``chosen_categories`` ("popular in C"), else the popular items ("popular now").

        Raises:
            UnknownPolicyError: the policy is not defined (the message lists the known ones).
        """
        raw = self._stored_history(user_id)
        return self._recommend(
            user_id,
            list(map(HistoryEvent._make, raw)),
            k,
            exclude_seen,
            category,
            policy,
            chosen_items,
            chosen_categories,
            scores_key=raw,
        )

    def recommend_for_history(
        self,
        item_ids: Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        category: str | None = None,
        user_id: str | None = None,
        event_type: str = "view",
        policy: str | PolicyConfig | None = None,
        chosen_items: Sequence[str] = (),
        chosen_categories: Sequence[str] = (),
    ) -> Recommendations:
        """Top-``k`` for an anonymous session (or a new user) described by ``item_ids``
        (oldest first); nothing is read from or written to the user's stored events. With an
        empty history, onboarding preferences serve as in `recommend_for_user`."""
        history = [HistoryEvent(str(i), event_type, 0) for i in item_ids]
        return self._recommend(
            user_id,
            history,
            k,
            exclude_seen,
            category,
            policy,
            chosen_items,
            chosen_categories,
        )

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
        base = self.single_scores.rows(served.model, [])[0]
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
        policy: str | PolicyConfig | None = None,
        chosen_items: Sequence[str] = (),
        chosen_categories: Sequence[str] = (),
        scores_key: object | None = None,
    ) -> Recommendations:
        """``scores_key``: the cached history object the history came from (its user's score
        row may then be reused, see `UserScores`); None for histories sent with a request."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        resolved: tuple[str, PolicyConfig] | None
        if isinstance(policy, PolicyConfig):
            resolved = (INLINE_POLICY, policy)
        else:
            resolved = self.policies.resolve(policy)  # unknown names fail before any work
        served = self.models.current  # this request uses this model to the end
        view = self._model_view(served)
        snap = self.catalogue()
        request_id = uuid.uuid4().hex

        indices = served.item_indices([e.item_id for e in history])
        ignored = list(
            dict.fromkeys(e.item_id for e, i in zip(history, indices, strict=True) if i < 0)
        )
        if ignored:
            self._warn_unknown(served.version, ignored)
        known = [(e, i) for e, i in zip(history, indices, strict=True) if i >= 0]
        user_key = (user_id, scores_key) if user_id is not None and scores_key is not None else None
        if not known and chosen_items:
            user_key = None  # the query is the request's choice, not the stored history
            # onboarding: the items a user without events picked are the query
            history = [HistoryEvent(str(i), CHOSEN_EVENT, 0) for i in chosen_items]
            known = [(e, served.item_index(e.item_id)) for e in history]
            known = [(e, i) for e, i in known if i >= 0]
        seen_ids = {e.item_id for e in history} if exclude_seen else set()

        items: list[RecommendedItem] = []
        if not known and chosen_categories:
            items = self._popular_in(served, view, snap, k, seen_ids, chosen_categories)
        if known and resolved is not None:
            items = self._guided(
                served, view, snap, known, k, exclude_seen, category, resolved, request_id, user_key
            )
        elif known:
            items = self._personalised(
                served, view, snap, known, k, exclude_seen, category, user_key
            )
        if len(items) < k:
            if not items:
                self.stats.add(fallbacks=1)
            taken = seen_ids | {i.item_id for i in items}
            items += self._popular(served, view, snap, k - len(items), taken, category)
        items = self._with_new_items(view, items, k, seen_ids, category)
        self.stats.add(recommendations=1)
        result = Recommendations(
            user_id,
            served.version,
            items,
            request_id,
            ignored,
            # the policy re-ranks the model's list; popular-fallback lists are not guided
            resolved[0] if resolved is not None and known else None,
        )
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
        user_key: tuple[str, object] | None = None,
    ) -> list[RecommendedItem]:
        hist = np.asarray([i for _, i in known], dtype=np.int64)
        candidates = view.candidates(category)
        if candidates is not None and len(candidates) == 0:
            return []
        retriever = self._retriever(served)
        if retriever is not None:  # a large catalogue: ANN candidates, then exact scores
            blocked = view.blocked(category, hist if exclude_seen else None)
            found = self._per_user(
                served, user_key, Candidates, lambda: retriever.candidates_of(hist, k)
            )
            rec_idx, rec_scores = retriever.recommend(hist, k, blocked, found)
        else:
            scores = self._scores(served, known, user_key)
            ids, scores = top_k(
                scores[None], k, exclude=[hist] if exclude_seen else None, candidates=candidates
            )
            keep = ids[0] >= 0
            rec_idx, rec_scores = ids[0][keep], scores[0][keep]
        if len(rec_idx) == 0:
            return []
        return self._explain(served, snap, known, rec_idx, rec_scores)

    def _scores(
        self,
        served: ServedModel,
        known: list[tuple[HistoryEvent, int]],
        user_key: tuple[str, object] | None,
    ) -> np.ndarray:
        """``(I,)`` model scores of a history (items and event types; sequence models trained
        with types read them); reused while a stored history is unchanged."""

        def compute() -> np.ndarray:
            query = Query.from_histories(
                [np.asarray([i for _, i in known], dtype=np.int64)],
                event_types=[[e.event_type for e, _ in known]],
            )
            return served.model.score(query)[0]

        return self._per_user(served, user_key, np.ndarray, compute)

    def _per_user(
        self,
        served: ServedModel,
        user_key: tuple[str, object] | None,
        kind: type[T],
        compute: Callable[[], T],
    ) -> T:
        """What `UserScores` keeps for this user's unchanged history under the served model
        (a score row, or ANN candidates: ``kind``), else ``compute()``, kept for next time."""
        if user_key is not None:
            kept = self.user_scores.get(user_key[0], served.model, user_key[1])
            if isinstance(kept, kind):
                return kept
        value = compute()
        if user_key is not None:
            self.user_scores.put(user_key[0], served.model, user_key[1], value)
        return value

    def _retriever(self, served: ServedModel) -> Retriever | None:
        """The served model's ANN retriever when `ServiceSettings.ann` asks for one (built
        once per model version, cached on disk in the artefact's ``ann/`` folder)."""
        mode = self.settings.ann
        model = served.model
        if mode == "off" or (mode == "auto" and model.n_items < self.settings.ann_min_items):
            return None
        with self._retriever_lock:
            if served.version not in self._retrievers:
                started = time.perf_counter()
                retriever = Retriever.for_model(
                    model,
                    served.path / "ann",
                    candidates=self.settings.ann_candidates,
                    ef_search=self.settings.ann_ef_search,
                )
                # older versions go, except the one serving while this one is prepared
                current = self.models.current.version if self.models.loaded else None
                self._retrievers = {v: r for v, r in self._retrievers.items() if v == current} | {
                    served.version: retriever
                }
                if retriever is None:
                    logger.info("model %s has no vector form: every item is scored", served.name)
                else:
                    logger.info(
                        "ANN index of %d items ready in %.1fs",
                        retriever.index.n_items,
                        time.perf_counter() - started,
                    )
            retriever = self._retrievers[served.version]
            if retriever is not None and retriever.index.n_items < model.n_items:
                view = vector_view(model)  # items were added online: index them too
                if view is not None:
                    retriever.sync(view)
            return retriever

    def _explain(
        self,
        served: ServedModel,
        snap: CatalogueSnapshot,
        known: list[tuple[HistoryEvent, int]],
        rec_idx: np.ndarray,
        rec_scores: np.ndarray,
    ) -> list[RecommendedItem]:
        """The model's reason for each item: the recent history item whose one-item query
        raises its score the most, else "popular now"."""
        model = served.model
        recent: dict[int, HistoryEvent] = {}
        for event, idx in reversed(known):
            if idx not in recent:
                recent[idx] = event
                if len(recent) == self.settings.reason_history_items:
                    break
        rows = [np.empty(0, dtype=np.int64)] + [np.asarray([i]) for i in recent]
        retriever = self._retriever(served)
        if retriever is not None:  # only the listed items: never the whole catalogue
            single = retriever.score_items(Query.from_histories(rows), rec_idx)  # (1 + m, n)
        else:  # rows of one-item queries depend on the model and the item only: cached
            single = self.single_scores.rows(model, list(recent))[:, rec_idx]  # (1 + m, n)
        influence = single[1:] - single[0]  # (m, n)
        best = influence.argmax(axis=0)  # (n,)
        sources = list(recent.values())
        out = []
        for col, (item_id, score) in enumerate(
            zip(served.item_ids(rec_idx), rec_scores, strict=True)
        ):
            text_only = item_id in self._text_items  # added online, known from its text
            if influence[best[col], col] > INFLUENCE_EPS:
                src = sources[best[col]]
                verb = VERBS.get(src.event_type, "interacted with")
                reason = f"because you {verb} {snap.label(src.item_id)}"
                if text_only:
                    reason = f"{NEW_ITEM} similar to {snap.label(src.item_id)}"
                out.append(RecommendedItem(item_id, float(score), reason, src.item_id))
            else:
                out.append(
                    RecommendedItem(item_id, float(score), NEW_ITEM if text_only else POPULAR)
                )
        return out

    # -- guidance ----------------------------------------------------------------------------------
    def _guided(
        self,
        served: ServedModel,
        view: ModelCatalogue,
        snap: CatalogueSnapshot,
        known: list[tuple[HistoryEvent, int]],
        k: int,
        exclude_seen: bool,
        category: str | None,
        resolved: tuple[str, PolicyConfig],
        request_id: str,
        user_key: tuple[str, object] | None = None,
    ) -> list[RecommendedItem]:
        """The model's scores re-ranked by a policy; stage reasons and propensities kept."""
        name, policy = resolved
        space = self._item_space(served, view, snap)
        pipeline = self._pipeline(served, view, name, policy, space)
        hist = np.asarray([i for _, i in known], dtype=np.int64)
        scores = self._scores(served, known, user_key).copy()  # the stages may write to it
        blocked = view.blocked(category, hist if exclude_seen else None)
        # seeded by the request id: a logged list can be reproduced from its id
        rng = np.random.default_rng(int(request_id[:16], 16))
        out = pipeline.run(scores, GuideRequest(hist, k, rng, now=time.time()), space, blocked)
        if len(out.items) == 0:
            return []
        base = self._explain(served, snap, known, out.items, out.scores)
        guided = []
        for item, stage_reason, p in zip(base, out.reasons, out.propensities, strict=True):
            if stage_reason is not None:  # the stage placed it: its reason, not the model's
                item = replace(item, reason=stage_reason, because_item_id=None)
            guided.append(replace(item, propensity=float(p)))
        return guided

    def _bandit_for(self, version: str, n_items: int) -> BanditState:
        with self._guide_lock:
            if self._bandit is None or self._bandit[0] != version:
                self._bandit = (version, BanditState(n_items))
            return self._bandit[1]

    def _record_clicks(self, events: Sequence[EventRecord]) -> None:
        """Clicks (and stronger events) update the exploration posteriors."""
        if self._bandit is None:
            return
        version, bandit = self._bandit
        served = self.models.current
        if served.version != version:
            return
        idx = [
            served.item_index(e.item_id)
            for e in events
            if e.event_type in ("click", "cart", "purchase")
        ]
        idx = [i for i in idx if i >= 0]
        if idx:
            np.add.at(bandit.clicks, np.asarray(idx, dtype=np.int64), 1.0)
            # a click counts as a show too when its impression was never logged
            np.maximum(bandit.shows, bandit.clicks, out=bandit.shows)

    def _item_space(
        self, served: ServedModel, view: ModelCatalogue, snap: CatalogueSnapshot
    ) -> ItemSpace:
        key = (served.version, view.generation)
        with self._guide_lock:
            space = self._spaces.get(key)
        if space is not None:
            return space
        n = served.model.n_items
        ids = served.item_ids(np.arange(n))
        names = sorted(view.by_category)
        codes = np.full(n, -1, dtype=np.int64)
        for code, cat in enumerate(names):
            codes[view.by_category[cat]] = code
        created = np.full(n, np.nan)
        attributes: dict[str, np.ndarray] = {}
        new_since = now_ms() - int(self.settings.new_item_hours * 3_600_000)
        new_items = []
        for rec in snap.items.values():
            idx = served.item_index(rec.item_id)
            if idx == UNKNOWN:
                continue
            created[idx] = rec.created_at / 1000.0
            if rec.created_at >= new_since:
                new_items.append(idx)
            for key_, value in rec.metadata.items():
                if isinstance(value, str | int | float | bool) or value is None:
                    if key_ not in attributes:
                        attributes[key_] = np.full(n, None, dtype=object)
                    attributes[key_][idx] = value
        popularity = np.zeros(n)
        for item_id, count in self._trending():
            idx = served.item_index(item_id)
            if idx != UNKNOWN:
                popularity[idx] = count
        similarity: ItemSimilarity | None
        try:
            similarity = similarity_from_model(served.model)
        except ValueError:
            similarity = CategorySimilarity(codes) if names else None
        space = ItemSpace(
            n,
            item_ids=ids,
            categories=codes,
            category_names=tuple(names),
            available=view.available,
            popularity=popularity,
            created_at=created,
            attributes=attributes,
            similarity=similarity,
            new_items=np.asarray(sorted(new_items), dtype=np.int64),
        )
        with self._guide_lock:
            self._spaces = {
                k_: v for k_, v in self._spaces.items() if k_[0] == served.version
            }  # older catalogue generations and models go
            self._spaces[key] = space
        return space

    def _pipeline(
        self,
        served: ServedModel,
        view: ModelCatalogue,
        name: str,
        policy: PolicyConfig,
        space: ItemSpace,
    ) -> Pipeline:
        if name == INLINE_POLICY:  # given with the request: cached by its content
            tag = hashlib.sha1(policy.model_dump_json(by_alias=True).encode()).hexdigest()
            name = f"{INLINE_POLICY}:{tag[:16]}"
        key = (served.version, view.generation, name, self.policies.generation)
        with self._guide_lock:
            pipeline = self._guides.get(key)
        if pipeline is not None:
            return pipeline
        bandit = self._bandit_for(served.version, served.model.n_items)
        pipeline = Pipeline.from_config(policy, space, bandit=bandit, name=name)
        with self._guide_lock:
            if len(self._guides) > 256:
                self._guides.clear()
            self._guides[key] = pipeline
        return pipeline

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

    def _popular_in(
        self,
        served: ServedModel,
        view: ModelCatalogue,
        snap: CatalogueSnapshot,
        k: int,
        taken: set[str],
        categories: Sequence[str],
    ) -> list[RecommendedItem]:
        """Popular items of the chosen categories, taken in turn ("popular in C")."""
        lists = [
            [
                replace(i, reason=f"popular in {c}")
                for i in self._popular(served, view, snap, k, taken, c)
            ]
            for c in dict.fromkeys(categories)
        ]
        out: list[RecommendedItem] = []
        chosen = set(taken)
        for rank in range(k):
            for lst in lists:
                if rank < len(lst) and lst[rank].item_id not in chosen and len(out) < k:
                    out.append(lst[rank])
                    chosen.add(lst[rank].item_id)
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
                    item.propensity,
                )
                for position, item in enumerate(result.items)
            ]
        )
        if result.policy is not None and self._bandit is not None:
            version, bandit = self._bandit
            if version == result.model_version:
                served = self.models.current
                idx = [served.item_index(i.item_id) for i in result.items]
                shown_idx = np.asarray([i for i in idx if i >= 0], dtype=np.int64)
                if len(shown_idx):
                    np.add.at(bandit.shows, shown_idx, 1.0)

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
