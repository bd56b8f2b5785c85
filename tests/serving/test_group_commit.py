"""`GroupCommit`: concurrent batches share one transaction; results and errors reach each caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from recpilot.serving.store import EventRecord, GroupCommit


def batch(*ids: str) -> dict[str, EventRecord]:
    return {i: EventRecord(i, "u", "a", "view", 1) for i in ids}


def test_callers_that_arrive_during_a_write_share_the_next_transaction() -> None:
    groups: list[list[list[str]]] = []
    started = threading.Event()

    def write(batches: Sequence[dict[str, EventRecord]]) -> list[set[str]]:
        groups.append([list(b) for b in batches])
        started.set()
        time.sleep(0.2)  # a slow disk flush: everyone else arrives meanwhile
        return [set(b) for b in batches]

    gc = GroupCommit(write)
    out: dict[int, set[str]] = {}
    first = threading.Thread(target=lambda: out.__setitem__(0, gc.commit(batch("a0"))))
    first.start()
    started.wait()
    rest = [
        threading.Thread(target=lambda n=n: out.__setitem__(n, gc.commit(batch(f"a{n}"))))
        for n in range(1, 6)
    ]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join()
    assert out == {n: {f"a{n}"} for n in range(6)}
    assert groups[0] == [["a0"]] and len(groups) == 2  # the five waiting batches: one write
    assert sorted(b[0] for b in groups[1]) == [f"a{n}" for n in range(1, 6)]
    assert (gc.transactions, gc.batches) == (2, 6)


def test_a_failed_write_fails_every_batch_in_it_and_the_next_group_still_runs() -> None:
    calls = 0

    def write(batches: Sequence[dict[str, EventRecord]]) -> list[set[str]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")
        return [set(b) for b in batches]

    gc = GroupCommit(write)
    with pytest.raises(RuntimeError, match="disk full"):
        gc.commit(batch("x"))
    assert gc.commit(batch("y")) == {"y"}
