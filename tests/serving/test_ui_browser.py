"""The web UI end to end: headless Chromium (Debian's ``chromium``) driven by Playwright against
a real uvicorn server on a free localhost port.

Skips with the reason when ``playwright`` (the Python package; its driver ships in the wheel)
or the ``chromium`` binary is absent: ``apt-get install -y chromium chromium-driver`` and
``pip install playwright`` (never ``playwright install``: the browser comes from Debian).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from recpilot.config import ServiceSettings
from recpilot.serving.app import create_app
from recpilot.serving.service import RecService
from recpilot.serving.store import EventRecord

from .conftest import ITEMS_PER_BLOCK, N_BLOCKS, WRITE_KEY, item, make_settings

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
CHROMIUM = chromium_path()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium binary (apt-get install -y chromium chromium-driver)",
    ),
]


class ServerThread:
    """A real uvicorn server on a socket bound here (so the port is known and free)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture
def served(tmp_path: Path, artifact: Path) -> Iterator[tuple[RecService, str]]:
    """A started service (titles in the catalogue, one user with one view) behind uvicorn."""
    model_dir = tmp_path / "model"
    shutil.copytree(artifact, model_dir)
    (model_dir / "metrics.json").write_text(
        json.dumps({"metrics": {"NDCG@10": 0.4321, "HR@10": 0.625}})
    )
    with serve_ui(make_settings(model_dir, f"sqlite:///{tmp_path / 'ui.db'}")) as served:
        yield served


@contextmanager
def serve_ui(settings: ServiceSettings) -> Iterator[tuple[RecService, str]]:
    """A started service behind uvicorn: titled, categorised catalogue, one user (alice) with
    one view."""
    service = RecService.open(settings)
    service.put_items(
        [
            (item(b, j), True, {"title": f"Gadget {b}-{j}", "category": f"block{b}"})
            for b in range(N_BLOCKS)
            for j in range(ITEMS_PER_BLOCK)
        ]
    )
    service.ingest([EventRecord("seed-1", "alice", item(0, 0), "view", 1_700_000_000_000)])
    try:
        with ServerThread(create_app(settings, service)) as server:
            yield service, server.url
    finally:
        service.close()


def rec_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "[data-testid=rec-item]", "nodes => nodes.map(n => n.dataset.itemId)"
    )
    return ids


def test_pick_a_user_click_an_item_and_watch_the_recommendations_change(
    served: tuple[RecService, str], tmp_path: Path
) -> None:
    service, url = served
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            page.goto(f"{url}/ui")
            expect = sync_api.expect
            expect(page.get_by_test_id("model-version")).to_have_text(service.model_version)

            # the key is typed, checked, and unlocks the user list
            page.get_by_test_id("api-key").fill(WRITE_KEY)
            page.get_by_test_id("key-save").click()
            expect(page.get_by_test_id("key-status")).to_contain_text('key "writer" accepted')
            page.locator("[data-testid=users] li[data-user-id=alice]").click()
            expect(page.get_by_test_id("current-user")).to_have_text("alice")

            recs = page.get_by_test_id("rec-item")
            expect(recs.first).to_contain_text("because you viewed Gadget 0-0")
            before = rec_ids(page)
            assert before and all(i.startswith("i0_") for i in before[:4])
            expect(recs.first).to_contain_text("block0")  # category from the catalogue
            history = page.get_by_test_id("history-item")
            expect(history).to_have_count(1)
            expect(history.first).to_contain_text("Gadget 0-0")

            # click the first recommendation: a click event goes to the store
            clicked = before[0]
            refresh = int(page.get_by_test_id("recs").get_attribute("data-refresh") or 0)
            recs.first.click()
            page.wait_for_function(
                "n => Number(document.getElementById('recs').dataset.refresh) > n", arg=refresh
            )
            expect(page.get_by_test_id("status")).to_contain_text("sent click on Gadget")
            stored = service.store.user_history("alice")
            assert [(e.item_id, e.event_type) for e in stored] == [
                (item(0, 0), "view"),
                (clicked, "click"),
            ]
            after = rec_ids(page)
            assert after != before and clicked not in after
            expect(history).to_have_count(2)
            expect(history.first).to_contain_text("click")
            page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)

            # a new user (any new id): popular items, no history
            page.get_by_test_id("user-id").fill("newcomer")
            page.get_by_test_id("user-open").click()
            expect(page.get_by_test_id("current-user")).to_have_text("newcomer")
            expect(recs.first).to_contain_text("popular now")
            expect(page.get_by_test_id("history")).to_contain_text("no events yet")

            # the metrics page: offline numbers and live request statistics
            page.goto(f"{url}/ui/metrics")
            offline = page.get_by_test_id("offline-metrics")
            expect(offline).to_contain_text("metrics.NDCG@10")
            expect(offline).to_contain_text("0.4321")
            expect(page.get_by_test_id("requests")).to_contain_text(
                "/users/{user_id}/recommendations"
            )
            expect(page.get_by_test_id("requests")).to_contain_text("/events")
            expect(page.get_by_test_id("service-counters")).to_contain_text("events_stored")
            page.screenshot(path=str(tmp_path / "metrics.png"), full_page=True)
        finally:
            browser.close()
    assert not problems, problems  # no script errors, no Content-Security-Policy violations
    for name in ("ui.png", "metrics.png"):
        assert (tmp_path / name).stat().st_size > 10_000
