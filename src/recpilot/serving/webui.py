"""The web UI at ``/ui``: static pages and the small JSON API they call.

Pages (plain HTML, CSS and JavaScript shipped in ``recpilot/serving/ui/``; no build step, no
network access beyond this server):

- ``/ui``: pick a recent user or type any id (a new id is a new user), see their history and
  recommendations with reasons and the model version; clicking an item posts an event
  (``POST /events``) and the recommendations are fetched again.
- ``/ui/metrics``: the served model's offline numbers (its artefact's ``metrics.json``) and live
  request statistics (per-route counts, p50/p95/p99 latency, rate) and service counters.

Keys: the server never hands a key to the browser. Whoever uses the UI types an API key; the
page keeps it in ``sessionStorage`` (this tab only, gone when it closes) and sends it in the
``X-API-Key`` header, exactly like any other client. A custom header cannot be set by another
site's form or image, so there is no cross-site request forgery through the UI, and the pages
are served with a strict Content-Security-Policy (scripts from this server only, no inline
code) and build every element with ``textContent`` (catalogue titles cannot inject markup).

JSON routes (under ``/ui/api``; not part of the public API, left out of the OpenAPI document):

- ``GET /ui/api/config``: what the page needs to start (model version, limits).
- ``GET /ui/api/key``: the name and scopes of the key sent (401 when it is not valid).
- ``GET /ui/api/users`` and ``GET /ui/api/users/{user_id}/history``: stored behaviour, so they
  always need a key with the read scope, even where recommendation routes are open.
- ``POST /ui/api/items/lookup``: titles and categories from the catalogue.
- ``GET /ui/api/stats``: model, offline metrics, service counters and request statistics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from recpilot import __version__
from recpilot.serving.app import (
    ERRORS,
    ServiceDep,
    SettingsDep,
    _api_key,
    match_key,
    require,
)
from recpilot.serving.store import MAX_ID_LENGTH

UI_DIR = Path(__file__).with_name("ui")

#: Static files the UI serves, by name, with their media types (nothing else is served).
ASSETS = {
    "common.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "metrics.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGES = {"index": "index.html", "metrics": "metrics.html"}

#: Sent with every page and asset: scripts and styles from this server only, no inline code,
#: no framing, requests only to this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

MAX_LOOKUP = 500


# -- schemas ---------------------------------------------------------------------------------------
class UiConfig(BaseModel):
    model_version: str
    model_name: str
    read_requires_key: bool
    keys_configured: bool
    default_k: int
    max_k: int
    recpilot_version: str


class KeyInfo(BaseModel):
    name: str
    scopes: list[str]


class UserSummary(BaseModel):
    user_id: str
    events: int
    last_timestamp: int = Field(description="newest event time, ms since the Unix epoch")


class UserList(BaseModel):
    users: list[UserSummary]


class HistoryItem(BaseModel):
    item_id: str
    event_type: str
    timestamp: int
    title: str | None
    category: str | None


class UserHistory(BaseModel):
    user_id: str
    events: list[HistoryItem] = Field(description="oldest first, as the model reads them")


class ItemLookup(BaseModel):
    item_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        max_length=MAX_LOOKUP
    )


class ItemInfo(BaseModel):
    title: str | None
    category: str | None
    available: bool
    known_to_model: bool


class ItemInfos(BaseModel):
    items: dict[str, ItemInfo]


# -- helpers ---------------------------------------------------------------------------------------
def _asset(name: str, media_type: str) -> Response:
    path = UI_DIR / name
    if not path.is_file():
        raise HTTPException(404, f"the web UI file {name} is missing from the installation")
    return Response(path.read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


def finite_json(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats as None and nesting cut at 6 levels (JSON-safe)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= 6:
        return None
    if isinstance(value, dict):
        return {str(k): finite_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v, depth + 1) for v in value]
    return value


# -- routes ----------------------------------------------------------------------------------------
ui_router = APIRouter(prefix="/ui", tags=["web UI"], include_in_schema=False, responses=ERRORS)


@ui_router.get("", response_class=Response)
def index_page() -> Response:
    """The users, history and recommendations page."""
    return _asset(PAGES["index"], "text/html; charset=utf-8")


@ui_router.get("/metrics", response_class=Response)
def metrics_page() -> Response:
    """The offline and live metrics page."""
    return _asset(PAGES["metrics"], "text/html; charset=utf-8")


@ui_router.get("/static/{name}", response_class=Response)
def static_file(name: str) -> Response:
    """One of the UI's scripts or style sheets (a fixed list; nothing else is served)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no web UI file named {name!r}")
    return _asset(name, media_type)


@ui_router.get("/api/config", response_model=UiConfig)
def ui_config(request: Request, service: ServiceDep, settings: SettingsDep) -> UiConfig:
    """What the page needs to start."""
    served = service.models.current
    return UiConfig(
        model_version=served.version,
        model_name=served.name,
        read_requires_key=settings.read_requires_key,
        keys_configured=bool(request.app.state.api_keys),
        default_k=settings.default_k,
        max_k=settings.max_k,
        recpilot_version=__version__,
    )


@ui_router.get("/api/key", response_model=KeyInfo)
def key_info(request: Request, key: Annotated[str | None, Security(_api_key)]) -> KeyInfo:
    """The name and scopes of the key in ``X-API-Key`` (401 when absent or not valid)."""
    challenge = {"WWW-Authenticate": "ApiKey"}
    if not request.app.state.api_keys:
        raise HTTPException(
            401,
            "this server has no API key configured: start it with --api-key or "
            "RECPILOT_API_KEY to send events from the UI",
            headers=challenge,
        )
    match = match_key(request.app.state.api_keys, key) if key else None
    if match is None:
        raise HTTPException(401, "missing or invalid API key", headers=challenge)
    return KeyInfo(name=match.name, scopes=sorted(match.scopes))


@ui_router.get(
    "/api/users", response_model=UserList, dependencies=[Depends(require("read", always=True))]
)
def recent_users(
    service: ServiceDep, limit: Annotated[int, QueryParam(ge=1, le=500)] = 50
) -> UserList:
    """Users whose events arrived most recently (needs a key: it reveals stored behaviour)."""
    rows = service.store.recent_users(limit)
    return UserList(
        users=[UserSummary(user_id=u, events=n, last_timestamp=ts) for u, n, ts in rows]
    )


@ui_router.get(
    "/api/users/{user_id}/history",
    response_model=UserHistory,
    dependencies=[Depends(require("read", always=True))],
)
def user_history(
    user_id: Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH)],
    service: ServiceDep,
) -> UserHistory:
    """The history the model reads for this user (needs a key: it reveals stored behaviour)."""
    snap = service.catalogue()
    events = []
    for e in service.history(user_id):
        title = snap.label(e.item_id)
        events.append(
            HistoryItem(
                item_id=e.item_id,
                event_type=e.event_type,
                timestamp=e.timestamp,
                title=None if title == e.item_id else title,
                category=snap.category(e.item_id),
            )
        )
    return UserHistory(user_id=user_id, events=events)


@ui_router.post(
    "/api/items/lookup", response_model=ItemInfos, dependencies=[Depends(require("read"))]
)
def lookup_items(body: ItemLookup, service: ServiceDep) -> ItemInfos:
    """Titles, categories and availability of items from the catalogue."""
    served = service.models.current
    snap = service.catalogue()
    out = {}
    for item_id in body.item_ids:
        title = snap.label(item_id)
        out[item_id] = ItemInfo(
            title=None if title == item_id else title,
            category=snap.category(item_id),
            available=snap.available(item_id),
            known_to_model=served.item_index(item_id) >= 0,
        )
    return ItemInfos(items=out)


@ui_router.get("/api/stats")
def stats(request: Request, service: ServiceDep) -> dict[str, Any]:
    """The served model, its offline metrics, service counters and request statistics."""
    served = service.models.current
    counters = service.stats
    request_stats = request.app.state.request_stats
    return {
        "model": {
            "version": served.version,
            "name": served.name,
            "n_items": served.model.n_items,
            "n_users": served.meta.get("n_users"),
            "created": served.meta.get("created"),
            "trained_with": served.meta.get("recpilot_version"),
            "loaded_at": served.loaded_at,
        },
        "offline_metrics": finite_json(served.metrics),
        "service": {
            "events_stored": counters.events_stored,
            "events_duplicate": counters.events_duplicate,
            "recommendation_lists": counters.recommendations,
            "fallback_lists": counters.fallbacks,
            "unknown_history_items": counters.unknown_history_items,
            "cache_hits": service.cache.hits,
            "cache_misses": service.cache.misses,
            "cached_users": len(service.cache),
            "catalogue_items": len(service.catalogue().items),
        },
        "requests": request_stats.snapshot(),
        "started_at": request_stats.started,
        "recpilot_version": __version__,
    }


__all__ = ["ASSETS", "PAGES", "SECURITY_HEADERS", "UI_DIR", "finite_json", "ui_router"]
