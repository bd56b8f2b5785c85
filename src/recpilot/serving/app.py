"""The HTTP API: a thin FastAPI layer over `RecService`.

``create_app(settings)`` builds the app; the lifespan handler opens the service (migrates the
store, loads the model) and closes it. One router per resource; request and response bodies
are pydantic schemas (the OpenAPI document at ``/openapi.json``, browsable at ``/docs``).

Errors answer ``{"error": code, "message": what was wrong, "details": [...]}`` with a 4xx
status, and never carry a stack trace; unexpected failures are logged and answer 500.

The web UI (``/ui``, `recpilot.serving.webui`) is served by the same app unless
``ServiceSettings.ui`` is off. ``POST /predict`` answers calibrated behaviour probabilities
(click, cart, purchase, like) from the behaviour model (`recpilot.serving.behaviour`).
"""

from __future__ import annotations

import gc
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from recpilot import __version__
from recpilot.config import ServiceSettings
from recpilot.errors import ArtifactError, RecPilotError, UnknownIdError
from recpilot.guide.policy import PolicyConfig
from recpilot.serving.service import Recommendations, RecService
from recpilot.serving.store import MAX_EVENT_TYPE_LENGTH, MAX_ID_LENGTH, EventRecord, StoreError

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
Scope = Literal["read", "write", "admin"]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


# -- schemas ---------------------------------------------------------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(_In):
    """One event; ``event_id`` is the client's id, which makes re-posting it harmless."""

    event_id: Id
    user_id: Id
    item_id: Id
    event_type: str = Field(
        "view",
        min_length=1,
        max_length=MAX_EVENT_TYPE_LENGTH,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="view, click, cart, purchase, rating or a custom type",
    )
    timestamp: datetime | None = Field(
        None,
        description="ISO-8601 (UTC when no offset is given) or epoch seconds; default: now",
    )
    value: float | None = Field(None, allow_inf_nan=False, description="e.g. a rating")
    session_id: Id | None = None

    def record(self, received: int) -> EventRecord:
        ts = received
        if self.timestamp is not None:
            stamp = self.timestamp
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            ts = int(stamp.timestamp() * 1000)
        return EventRecord(
            self.event_id,
            self.user_id,
            self.item_id,
            self.event_type,
            ts,
            self.value,
            self.session_id,
        )


class EventBatch(_In):
    events: list[EventIn] = Field(min_length=1)


class EventsAccepted(BaseModel):
    """Events are durable in the store when this is answered."""

    received: int
    stored: int
    duplicates: int = Field(description="event ids stored before (or repeated in the batch)")


class RecommendedItemOut(BaseModel):
    item_id: str
    score: float
    reason: str = Field(
        description='e.g. "because you viewed X", "popular now", "new item", or the guidance '
        'stage that placed it: "promoted", "to diversify", "exploring something new"'
    )
    because_item_id: str | None = None
    propensity: float = Field(
        1.0, description="probability that the policy shows this item at this position"
    )


class RecommendationsOut(BaseModel):
    user_id: str | None
    model_version: str
    request_id: str = Field(description="identifies this list in the impression log")
    items: list[RecommendedItemOut]
    ignored_items: list[str] = Field(
        default_factory=list, description="history items the model does not know (ignored)"
    )
    policy: str | None = Field(None, description="guidance policy applied (None: none)")

    @classmethod
    def of(cls, recs: Recommendations) -> RecommendationsOut:
        return cls(
            user_id=recs.user_id,
            model_version=recs.model_version,
            request_id=recs.request_id,
            items=[
                RecommendedItemOut(
                    item_id=i.item_id,
                    score=i.score,
                    reason=i.reason,
                    because_item_id=i.because_item_id,
                    propensity=i.propensity,
                )
                for i in recs.items
            ],
            ignored_items=recs.ignored_items,
            policy=recs.policy,
        )


class RecommendationRequest(_In):
    """An anonymous session or a new user: the history travels in the request."""

    history: list[Id] = Field(description="item ids, oldest first")
    user_id: Id | None = Field(None, description="optional, for the impression log only")
    k: int | None = Field(None, ge=1)
    exclude_seen: bool = True
    category: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    chosen_items: list[Id] = Field(
        default_factory=list,
        max_length=100,
        description="onboarding: items a user without history picked (the query when the "
        "history is empty)",
    )
    chosen_categories: list[Id] = Field(
        default_factory=list,
        max_length=50,
        description="onboarding: categories picked; with no usable history or chosen item, "
        "their popular items are served",
    )
    policy: str | None = Field(
        None, min_length=1, max_length=200, description="guidance policy (GET /policies)"
    )
    policy_config: PolicyConfig | None = Field(
        None,
        description="a policy given with this request (its stages, as in the policy file); "
        'reported as "inline". Not together with `policy`',
    )

    @model_validator(mode="after")
    def _one_policy(self) -> RecommendationRequest:
        if self.policy is not None and self.policy_config is not None:
            raise ValueError("give either `policy` (a name) or `policy_config`, not both")
        return self


class HistoryEventIn(_In):
    """One event of a history sent with a predict request."""

    item_id: Id
    event_type: str = Field("view", min_length=1, max_length=MAX_EVENT_TYPE_LENGTH)
    timestamp: int | None = Field(
        None, ge=0, description="ms since the epoch; None: one second apart, ending now"
    )
    value: float | None = Field(None, description="e.g. the rating")


class PredictRequest(_In):
    """Candidates of one user whose behaviour probabilities are wanted."""

    user_id: Id | None = Field(None, description="the user; their stored history is read")
    item_ids: list[Id] = Field(min_length=1, description="candidate items (one batch)")
    behaviours: list[str] | None = Field(
        None, description="e.g. ['click', 'purchase']; None: every behaviour the model knows"
    )
    history: list[Id | HistoryEventIn] | None = Field(
        None,
        description="anonymous sessions / new users: item ids or events, oldest first; "
        "replaces the stored history",
    )


class PredictionOut(BaseModel):
    item_id: str
    probabilities: dict[str, float]


class PredictionsOut(BaseModel):
    user_id: str | None
    model_version: str = Field(description="the behaviour model's version")
    predictions: list[PredictionOut]
    unknown_items: list[str] = Field(
        default_factory=list, description="candidates the behaviour model does not know (skipped)"
    )


class PolicyOut(BaseModel):
    name: str
    description: str


class PoliciesOut(BaseModel):
    default: str | None = Field(description="policy of requests that name none")
    policies: list[PolicyOut]
    error: str | None = Field(None, description="why the last edit of the file was ignored")


class ItemIn(_In):
    item_id: Id
    available: bool = True
    metadata: dict[str, Any] = Field(
        default_factory=dict, description='free JSON; "category" enables category filters'
    )


class ItemBatch(_In):
    items: list[ItemIn] = Field(min_length=1)


class ItemsWritten(BaseModel):
    written: int


class UserErased(BaseModel):
    user_id: str
    events_deleted: int
    impressions_deleted: int


class ReloadRequest(_In):
    version: str | None = Field(None, description="registry version to serve; default: current")


class ReloadOut(BaseModel):
    previous: str | None
    current: str


class HealthOut(BaseModel):
    status: str
    model_loaded: bool
    model_version: str | None
    store: str
    store_ok: bool
    recpilot_version: str


class ErrorOut(BaseModel):
    error: str
    message: str
    details: list[str] = Field(default_factory=list)


# -- errors ----------------------------------------------------------------------------------------
def json_response(body: BaseModel, status: int = 200) -> Response:
    """``body`` serialised by pydantic-core at once. The hot routes return this: FastAPI would
    otherwise validate the returned model against the route's ``response_model`` again and
    encode it through ``jsonable_encoder`` (the model still documents the route in OpenAPI)."""
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error body: ``{"error": code, "message": ..., "details": [...]}``."""
    body = ErrorOut(error=code, message=message, details=details or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
    503: "unavailable",
}


def _validation_lines(exc: RequestValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        lines.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return lines


def _install_error_handlers(app: FastAPI) -> None:
    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        lines = _validation_lines(exc)
        return error_response(422, "invalid_request", "; ".join(lines[:5]), lines)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        return error_response(
            exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail), headers=headers
        )

    async def on_unknown_id(_: Request, exc: Exception) -> Response:
        return error_response(404, "not_found", str(exc))

    async def on_store(_: Request, exc: Exception) -> Response:
        logger.error("store failure: %s", exc)
        return error_response(503, "unavailable", "the event store is unavailable; retry later")

    async def on_recpilot(_: Request, exc: Exception) -> Response:
        return error_response(400, "bad_request", str(exc))

    async def on_any(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (logged)")

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(UnknownIdError, on_unknown_id)
    app.add_exception_handler(StoreError, on_store)
    app.add_exception_handler(SQLAlchemyError, on_store)
    app.add_exception_handler(RecPilotError, on_recpilot)
    app.add_exception_handler(Exception, on_any)


# -- middleware ------------------------------------------------------------------------------------
class _TooLarge(HTTPException):
    """Raised while a body streams in; FastAPI re-raises HTTP exceptions from ``receive``."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        message = (
            f"request body larger than the limit of {self.max_bytes} bytes; send smaller batches"
        )
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, "too_large", message)(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            msg = await receive()
            if msg.get("type") == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(message)
            return msg

        async def tracking_send(msg: Any) -> None:
            nonlocal started
            if msg.get("type") == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await error_response(413, "too_large", message)(scope, receive, send)


@dataclass
class _RouteStats:
    count: int = 0
    client_errors: int = 0
    server_errors: int = 0
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (end, seconds)


class RequestStats:
    """Per-route request counts and the latencies of the most recent requests.

    Prometheus histograms (``/metrics``) keep bucket counts only; the web UI's metrics page
    shows exact percentiles over a sliding window of the last ``window`` requests per route.

    Args:
        window: latencies kept per route.
    """

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self.started = time.time()
        self._started_monotonic = time.monotonic()
        self._routes: dict[tuple[str, str], _RouteStats] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        with self._lock:
            stats = self._routes.get((method, route))
            if stats is None:
                stats = self._routes[(method, route)] = _RouteStats(
                    recent=deque(maxlen=self.window)
                )
            stats.count += 1
            if status >= 500:
                stats.server_errors += 1
            elif status >= 400:
                stats.client_errors += 1
            stats.recent.append((time.monotonic(), seconds))

    def snapshot(self, rate_window_s: float = 60.0) -> list[dict[str, Any]]:
        """One row per route, busiest first: counts, p50/p95/p99 in ms over the window, and
        requests per second over the last ``rate_window_s`` seconds."""
        now = time.monotonic()
        span = max(1e-9, min(rate_window_s, now - self._started_monotonic))
        with self._lock:
            routes = [
                (key, s.count, s.client_errors, s.server_errors, list(s.recent))
                for key, s in self._routes.items()
            ]
        routes.sort(key=lambda r: (-r[1], r[0][1], r[0][0]))  # busiest first
        rows = []
        for (method, route), count, client_errors, server_errors, recent in routes:
            latencies = np.asarray([sec for _, sec in recent], dtype=np.float64) * 1000.0
            p50, p95, p99 = (
                np.percentile(latencies, [50, 95, 99]).tolist() if len(latencies) else [0.0] * 3
            )
            rows.append(
                {
                    "method": method,
                    "route": route,
                    "count": count,
                    "client_errors": client_errors,
                    "server_errors": server_errors,
                    "window": len(latencies),
                    "p50_ms": p50,
                    "p95_ms": p95,
                    "p99_ms": p99,
                    "per_second": sum(1 for end, _ in recent if now - end <= span) / span,
                }
            )
        return rows


class MetricsMiddleware:
    """Counts requests and times them per route template (``/users/{user_id}/...``)."""

    def __init__(
        self, app: ASGIApp, requests: Counter, latency: Histogram, stats: RequestStats
    ) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self.stats = stats

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def tracking_send(msg: Any) -> None:
            nonlocal status
            if msg.get("type") == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            seconds = time.perf_counter() - start
            self.latency.labels(method, path).observe(seconds)
            self.requests.labels(method, path, str(status)).inc()
            self.stats.observe(method, path, status, seconds)


class ServiceCollector(Collector):
    """Model version and service counters, read at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        service: RecService | None = getattr(self.app.state, "service", None)
        if service is None or not service.models.loaded:
            return
        served = service.models.current
        info = GaugeMetricFamily(
            "recpilot_model_info", "The served model (value 1)", labels=["version", "model"]
        )
        info.add_metric([served.version, served.name], 1.0)
        yield info
        yield GaugeMetricFamily(
            "recpilot_model_loaded_timestamp_seconds",
            "When the served model was loaded",
            value=served.loaded_at,
        )
        stats = service.stats
        for name, value, doc in (
            ("recpilot_events_stored", stats.events_stored, "Events stored"),
            ("recpilot_events_duplicate", stats.events_duplicate, "Re-posted event ids ignored"),
            ("recpilot_recommendation_lists", stats.recommendations, "Lists served"),
            ("recpilot_fallback_lists", stats.fallbacks, "Lists served without a usable history"),
            ("recpilot_cache_hits", service.cache.hits, "History cache hits"),
            ("recpilot_cache_misses", service.cache.misses, "History cache misses"),
        ):
            yield CounterMetricFamily(name, doc, value=value)


# -- dependencies ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Key:
    secret: bytes
    scopes: frozenset[str]
    name: str


_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="API key; write routes need the write scope, erase and reload the admin scope",
)


# Dependencies are async: they never block, and FastAPI runs each sync dependency in the
# thread pool (one thread hop each, about 0.1 ms per request).
async def get_service(request: Request) -> RecService:
    service: RecService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise HTTPException(503, "the service is starting; retry in a moment")
    return service


async def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


ServiceDep = Annotated[RecService, Depends(get_service)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


def match_key(keys: list[_Key], given: str) -> _Key | None:
    """The configured key equal to ``given`` (constant-time comparison), or None."""
    secret = given.encode()
    match = None
    for k in keys:  # compare with every key: the time taken does not tell which matched
        if hmac.compare_digest(k.secret, secret):
            match = k
    return match


def require(scope: Scope, *, always: bool = False) -> Callable[..., Awaitable[str | None]]:
    """A dependency that checks the ``X-API-Key`` header for ``scope``; returns the key name.

    Args:
        scope: the scope the key must have.
        always: check a ``read`` key even when `ServiceSettings.read_requires_key` is off (the
            web UI's routes that reveal stored behaviour: user lists and histories).
    """

    async def check(request: Request, key: Annotated[str | None, Security(_api_key)]) -> str | None:
        settings: ServiceSettings = request.app.state.settings
        if scope == "read" and not settings.read_requires_key and not always:
            return None
        keys: list[_Key] = request.app.state.api_keys
        challenge = {"WWW-Authenticate": "ApiKey"}
        if not keys:
            raise HTTPException(
                401,
                "this server has no API key configured, so write and admin routes are "
                "disabled: start it with --api-key or RECPILOT_API_KEY",
                headers=challenge,
            )
        if not key:
            raise HTTPException(
                401, f"missing API key: send it in the {API_KEY_HEADER} header", headers=challenge
            )
        match = match_key(keys, key)
        if match is None:
            raise HTTPException(401, "invalid API key", headers=challenge)
        if scope not in match.scopes:
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        return match.name

    return check


def _check_k(k: int | None, settings: ServiceSettings) -> int:
    k = settings.default_k if k is None else k
    if k > settings.max_k:
        raise HTTPException(422, f"k must be between 1 and {settings.max_k}, got {k}")
    return k


def _check_batch(n: int, what: str, settings: ServiceSettings) -> None:
    if n > settings.max_batch_size:
        raise HTTPException(
            413,
            f"a batch of {n} {what} exceeds the limit of {settings.max_batch_size}; "
            "split it into smaller batches",
        )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 413, 422, 503)
}
UserIdPath = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH)]
ItemIdPath = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH)]
KQuery = Annotated[int | None, QueryParam(ge=1, description="list length (default 10)")]
PolicyQuery = Annotated[
    str | None,
    QueryParam(min_length=1, max_length=200, description="guidance policy (GET /policies)"),
]


# -- routers ---------------------------------------------------------------------------------------
events = APIRouter(prefix="/events", tags=["events"], responses=ERRORS)


@events.post("", response_model=EventsAccepted, dependencies=[Depends(require("write"))])
def post_events(batch: EventBatch, service: ServiceDep, settings: SettingsDep) -> Response:
    """Store a batch of events (durable before the answer; idempotent by ``event_id``)."""
    _check_batch(len(batch.events), "events", settings)
    received = int(time.time() * 1000)
    result = service.ingest([e.record(received) for e in batch.events])
    return json_response(
        EventsAccepted(received=result.received, stored=result.stored, duplicates=result.duplicates)
    )


recommendations = APIRouter(tags=["recommendations"], responses=ERRORS)


@recommendations.get(
    "/users/{user_id}/recommendations",
    response_model=RecommendationsOut,
    dependencies=[Depends(require("read"))],
)
async def user_recommendations(
    user_id: UserIdPath,
    service: ServiceDep,
    settings: SettingsDep,
    k: KQuery = None,
    exclude_seen: bool = True,
    category: Annotated[str | None, QueryParam(min_length=1, max_length=MAX_ID_LENGTH)] = None,
    policy: PolicyQuery = None,
    chosen_items: Annotated[list[str] | None, QueryParam(max_length=100)] = None,
    chosen_categories: Annotated[list[str] | None, QueryParam(max_length=50)] = None,
) -> Response:
    """Top-k for a user from their latest history (an event posted a moment ago counts),
    re-ranked by a guidance policy (unknown names: 400 listing the known ones). A user without
    events is served from onboarding choices (``chosen_items``, then ``chosen_categories``),
    else popular items; each item's reason says which path served it."""
    call = partial(
        service.recommend_for_user,
        user_id,
        _check_k(k, settings),
        exclude_seen,
        category,
        policy=policy,
        chosen_items=chosen_items or (),
        chosen_categories=chosen_categories or (),
    )
    # a cached history means no store read: computing here saves the thread-pool hop (and the
    # GIL hand-overs it costs); a store read goes to the pool so the event loop never waits
    recs = call() if service.answers_quickly(user_id) else await run_in_threadpool(call)
    return json_response(RecommendationsOut.of(recs))


@recommendations.post(
    "/recommendations", response_model=RecommendationsOut, dependencies=[Depends(require("read"))]
)
async def session_recommendations(
    body: RecommendationRequest, service: ServiceDep, settings: SettingsDep
) -> Response:
    """Top-k for an anonymous session or a new user whose history is in the request."""
    if len(body.history) > settings.max_request_history:
        raise HTTPException(
            413,
            f"a history of {len(body.history)} items exceeds the limit of "
            f"{settings.max_request_history}; send the most recent items only",
        )
    call = partial(
        service.recommend_for_history,
        body.history,
        _check_k(body.k, settings),
        body.exclude_seen,
        body.category,
        user_id=body.user_id,
        policy=body.policy_config if body.policy_config is not None else body.policy,
        chosen_items=body.chosen_items,
        chosen_categories=body.chosen_categories,
    )
    # the history comes with the request (no store read): computed on the event loop
    recs = call() if service.answers_quickly() else await run_in_threadpool(call)
    return json_response(RecommendationsOut.of(recs))


@recommendations.get(
    "/policies", response_model=PoliciesOut, dependencies=[Depends(require("read"))]
)
def list_policies(service: ServiceDep) -> PoliciesOut:
    """The guidance policies a request may name (the policy file, as last read)."""
    file = service.policies.policies
    return PoliciesOut(
        default=file.default,
        policies=[
            PolicyOut(name=n, description=p.description) for n, p in sorted(file.policies.items())
        ],
        error=service.policies.last_error,
    )


predictions = APIRouter(tags=["predictions"], responses=ERRORS)


@predictions.post(
    "/predict", response_model=PredictionsOut, dependencies=[Depends(require("read"))]
)
def predict(body: PredictRequest, service: ServiceDep, settings: SettingsDep) -> Response:
    """Calibrated probabilities of each behaviour for every candidate, in one model call.

    Candidates the behaviour model does not know are skipped and listed in ``unknown_items``.
    404 when no behaviour model is loaded; 400 for a behaviour the model does not predict.
    """
    from recpilot.serving.behaviour import BehaviourRequestError, HistoryItem, NoBehaviourModelError

    if body.user_id is None and body.history is None:
        raise HTTPException(422, "give a user_id (stored history) or a history, or both")
    _check_batch(len(body.item_ids), "candidate items", settings)
    history = None
    if body.history is not None:
        if len(body.history) > settings.max_request_history:
            raise HTTPException(
                413,
                f"a history of {len(body.history)} events exceeds the limit of "
                f"{settings.max_request_history}; send the most recent events only",
            )
        history = [
            HistoryItem(h)
            if isinstance(h, str)
            else HistoryItem(h.item_id, h.event_type, h.timestamp, h.value)
            for h in body.history
        ]
    try:
        out = service.predict(body.user_id, body.item_ids, body.behaviours, history)
    except NoBehaviourModelError as exc:
        raise HTTPException(404, str(exc)) from exc
    except BehaviourRequestError as exc:
        raise HTTPException(400, str(exc)) from exc
    return json_response(
        PredictionsOut(
            user_id=out.user_id,
            model_version=out.model_version,
            predictions=[
                PredictionOut(item_id=p.item_id, probabilities=p.probabilities)
                for p in out.predictions
            ],
            unknown_items=out.unknown_items,
        )
    )


items = APIRouter(prefix="/items", tags=["items"], responses=ERRORS)


@items.get(
    "/{item_id}/similar",
    response_model=RecommendationsOut,
    dependencies=[Depends(require("read"))],
)
async def similar_items(
    item_id: ItemIdPath, service: ServiceDep, settings: SettingsDep, k: KQuery = None
) -> Response:
    """Items related to one item, by the model's item-item scores."""
    call = partial(service.similar_items, item_id, _check_k(k, settings))
    recs = call() if service.answers_quickly() else await run_in_threadpool(call)
    return json_response(RecommendationsOut.of(recs))


@items.put("", response_model=ItemsWritten, dependencies=[Depends(require("write"))])
def put_items(batch: ItemBatch, service: ServiceDep, settings: SettingsDep) -> ItemsWritten:
    """Insert or update catalogue items; unavailable items are never recommended."""
    _check_batch(len(batch.items), "items", settings)
    written = service.put_items([(i.item_id, i.available, i.metadata) for i in batch.items])
    return ItemsWritten(written=written)


@items.delete("/{item_id}", status_code=204, dependencies=[Depends(require("write"))])
def delete_item(item_id: ItemIdPath, service: ServiceDep) -> Response:
    """Take an item out of the catalogue (it is never recommended again)."""
    service.delete_item(item_id)
    return Response(status_code=204)


users = APIRouter(prefix="/users", tags=["users"], responses=ERRORS)


@users.delete("/{user_id}", response_model=UserErased, dependencies=[Depends(require("admin"))])
def erase_user(user_id: UserIdPath, service: ServiceDep) -> UserErased:
    """Erase a user: events, impressions and cached state; afterwards a new user."""
    counts = service.erase_user(user_id)
    return UserErased(
        user_id=user_id, events_deleted=counts["events"], impressions_deleted=counts["impressions"]
    )


admin = APIRouter(prefix="/admin", tags=["admin"], responses={**ERRORS, 409: {"model": ErrorOut}})


@admin.post("/reload", response_model=ReloadOut, dependencies=[Depends(require("admin"))])
def reload_model(service: ServiceDep, body: ReloadRequest | None = None) -> ReloadOut:
    """Load the current (or a given registry) model version and swap it in atomically."""
    try:
        previous, current = service.reload(body.version if body is not None else None)
    except ArtifactError as exc:
        raise HTTPException(409, f"reload failed, still serving the previous model: {exc}") from exc
    return ReloadOut(previous=previous, current=current)


ops = APIRouter(tags=["operations"])


@ops.get("/health", response_model=HealthOut)
def health(request: Request) -> JSONResponse:
    """Liveness and readiness: 200 when the model is loaded and the store answers, else 503."""
    service: RecService | None = getattr(request.app.state, "service", None)
    if service is None:
        body = HealthOut(
            status="starting",
            model_loaded=False,
            model_version=None,
            store="",
            store_ok=False,
            recpilot_version=__version__,
        )
        return JSONResponse(body.model_dump(), status_code=503)
    body = HealthOut(**service.health(), recpilot_version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


@ops.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text: request counts and latencies per route, model version, counters."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


# -- the app ---------------------------------------------------------------------------------------
def create_app(
    settings: ServiceSettings, service: RecService | None = None, freeze_gc: bool = False
) -> FastAPI:
    """Build the API.

    Args:
        settings: service options (limits, keys, store, artefact).
        service: an already started service to serve (tests); by default the lifespan handler
            opens one from ``settings`` at start-up and closes it at shutdown.
        freeze_gc: after start-up, move every object alive (modules, the model, the
            catalogue) out of reach of Python's cyclic garbage collector (`gc.freeze`): a full
            collection then walks only what requests created since, instead of stalling every
            request in flight for 100-200 ms (measured with a sequence model on ML-1M). For a
            server process (`recpilot serve`), not for tests that build many apps.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        if owned:
            app.state.service = await run_in_threadpool(RecService.open, settings)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if owned:
                app.state.service.close()
                app.state.service = None

    app = FastAPI(
        title="RecPilot",
        version=__version__,
        description="Real-time recommendations that react to the newest event. "
        f"Write routes need an API key in the `{API_KEY_HEADER}` header.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.api_keys = [
        _Key(k.key.encode(), frozenset(k.scopes), k.name) for k in settings.api_keys
    ]
    registry = CollectorRegistry()
    requests = Counter(
        "recpilot_http_requests",
        "HTTP requests by method, route and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "recpilot_http_request_duration_seconds",
        "HTTP request latency by method and route",
        ["method", "route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        registry=registry,
    )
    registry.register(ServiceCollector(app))
    app.state.metrics = registry
    app.state.request_stats = RequestStats()

    for router in (events, recommendations, predictions, items, users, admin, ops):
        app.include_router(router)
    if settings.ui:
        from recpilot.serving.webui import ui_router

        app.include_router(ui_router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(  # outermost
        MetricsMiddleware, requests=requests, latency=latency, stats=app.state.request_stats
    )
    return app
