"""Serving: the event store, the model registry, `RecService` and the HTTP API.

- `recpilot.serving.store`: `Store` (SQLAlchemy Core over SQLite/WAL or PostgreSQL): events
  (idempotent by client event id), item catalogue, impressions, versioned migrations.
- `recpilot.serving.registry`: `ModelRegistry` (versioned artefacts, ``current`` pointer) and
  `ModelHolder` (atomic hot swap).
- `recpilot.serving.service`: `RecService`, the plain-Python service the routes wrap.
- `recpilot.serving.app`: ``create_app(settings)``, the FastAPI app (`recpilot serve`).
- `recpilot.serving.webui`: the web UI at ``/ui`` (pages in ``ui/``) and its JSON routes.
- `recpilot.serving.retrain`: `retrain`, promote-if-not-worse on the store's events.

Importing this package imports none of them (FastAPI loads only with the app).
"""
