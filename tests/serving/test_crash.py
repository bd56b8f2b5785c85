"""Crash durability: ``recpilot serve`` on SQLite killed with SIGKILL mid-ingestion.

Several clients post batches of events; the server is killed while batches are in flight and
started again on the same store. Every event whose batch was answered 2xx must be there:
re-posting those batches to the restarted server stores nothing new (all duplicates), and the
store read directly holds every one of their ids.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from recpilot.serving.store import Store

from .conftest import WRITE_KEY, item

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

BATCH = 50
CLIENTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(artifact: Path, db: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RECPILOT_API_KEY": WRITE_KEY}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from recpilot.cli import main; main()",
                "serve",
                "--artifact",
                str(artifact),
                "--db",
                db,
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not become healthy in {timeout}s:\n{log.read_text()[-3000:]}")


def batch(client: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"c{client}-b{n}-{j}",
            "user_id": f"u{client}-{n % 7}",
            "item_id": item(j % 4, j % 8),
            "event_type": "view",
            "timestamp": 1_700_000_000 + n,
        }
        for j in range(BATCH)
    ]


def test_every_acknowledged_event_survives_sigkill(tmp_path: Path, artifact: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    log = tmp_path / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": WRITE_KEY}
    server = start_server(artifact, db, port, log)
    acked: list[list[dict[str, object]]] = []
    unanswered = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def post_batches(client: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            n = 0
            while not stop.is_set():
                events = batch(client, n)
                n += 1
                try:
                    response = http.post("/events", json={"events": events})
                except httpx.HTTPError:  # killed while this batch was in flight
                    with lock:
                        unanswered[0] += 1
                    return
                if 200 <= response.status_code < 300:
                    with lock:
                        acked.append(events)

    try:
        wait_healthy(url, server, log)
        threads = [threading.Thread(target=post_batches, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # mid-ingestion: batches are in flight
        server.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        assert len(acked) >= 20, "too few batches were answered before the kill"
        assert unanswered[0] >= 1, "no batch was in flight when the server was killed"
        logger.info("acked %d batches; %d unanswered", len(acked), unanswered[0])

        server = start_server(artifact, db, port, log)
        wait_healthy(url, server, log)
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            for events in acked:  # re-posting an answered batch stores nothing new
                body = http.post("/events", json={"events": events}).json()
                assert body["duplicates"] == BATCH and body["stored"] == 0, body
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=20)

    store = Store(db)
    try:
        with store.engine.connect() as conn:
            stored = set(conn.execute(select(store.tables.events.c.event_id)).scalars())
    finally:
        store.close()
    expected = {str(e["event_id"]) for events in acked for e in events}
    assert expected <= stored, f"{len(expected - stored)} acknowledged events were lost"
