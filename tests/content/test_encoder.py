"""Item encoders, the on-disk embedding cache and item text."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recpilot.content import (
    EmbeddingCache,
    HashingEncoder,
    ItemEncoder,
    MiniLMEncoder,
    item_text,
    item_texts,
)
from recpilot.errors import ConfigError


class CountingEncoder:
    """A `HashingEncoder` that counts the texts it encodes (to see cache hits)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.inner = HashingEncoder(32)
        self.encoder_id = "counting"
        self.dim = 32
        self.seen: list[str] = []
        self.fail_after = fail_after

    def encode(self, texts):  # type: ignore[no-untyped-def]
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.seen.extend(texts)
        return self.inner.encode(texts)


def test_hashing_encoder_is_deterministic_unit_norm_and_topical() -> None:
    enc = HashingEncoder(128)
    assert isinstance(enc, ItemEncoder)
    v = enc.encode(["space rocket launch", "space rocket", "kitchen recipe", ""])
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-5)
    assert not v[3].any()
    np.testing.assert_array_equal(
        v, HashingEncoder(128).encode(["space rocket launch", "space rocket", "kitchen recipe", ""])
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_cache_hit_and_miss(tmp_path: Path) -> None:
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path, enc)
    first = cache.encode(["a b", "c d", "a b"])
    assert enc.seen == ["a b", "c d"]  # the duplicate is encoded once
    assert (cache.misses, cache.hits) == (2, 0)  # nothing was on disk yet
    # a new cache object reads the shards from disk: only the new text is encoded
    again = EmbeddingCache(tmp_path, enc)
    second = again.encode(["c d", "e f", "a b"])
    assert enc.seen == ["a b", "c d", "e f"]
    assert (again.misses, again.hits) == (1, 2)
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    # another encoder id never reads these vectors
    other = CountingEncoder()
    other.encoder_id = "other"
    EmbeddingCache(tmp_path, other).encode(["a b"])
    assert other.seen == ["a b"]


def test_interrupted_encoding_resumes(tmp_path: Path) -> None:
    texts = [f"item {i}" for i in range(10)]
    enc = CountingEncoder(fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(tmp_path, enc).encode(texts, batch_size=2)
    assert len(enc.seen) == 4
    resumed = CountingEncoder()
    out = EmbeddingCache(tmp_path, resumed).encode(texts, batch_size=2)
    assert resumed.seen == texts[4:]  # the two finished batches were kept
    np.testing.assert_allclose(out, HashingEncoder(32).encode(texts), rtol=1e-6)


def test_item_text_from_side_table() -> None:
    table = pl.DataFrame(
        {
            "item_id": [1, 2],
            "title": ["Toy Story (1995)", None],
            "genres": [["Animation", "Comedy"], []],
            "tags": [["pixar"], None],
        }
    )
    texts = item_texts(table, [2, 1, 3])
    assert texts[0] == ""
    assert texts[1] == "Toy Story (1995). Genres: Animation, Comedy. Tags: pixar."
    assert texts[2] == ""
    assert item_texts(table, ["1"])[0] == texts[1]  # string ids from a service
    record = {"title": "New", "category": "shoes", "description": "Red."}
    assert item_text(record) == "New. Category: shoes. Red."
    with pytest.raises(ValueError, match="item_id"):
        item_texts(pl.DataFrame({"id": [1]}), [1])


def test_hashing_encoder_rejects_tiny_dim() -> None:
    with pytest.raises(ConfigError, match="dim"):
        HashingEncoder(2)


def test_minilm_loads_and_encodes_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped MiniLM weights load and encode with every socket connection refused."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"network disabled in this test (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))  # type: ignore[arg-type]
    enc = MiniLMEncoder(batch_size=8)
    v = enc.encode(
        [
            "Toy Story (1995). Genres: Animation, Children.",
            "Heat (1995). Genres: Crime.",
            "A Bug's Life (1998). Genres: Animation, Children.",
        ]
    )
    assert v.shape == (3, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[2] > v[0] @ v[1]  # two animated children's films are closer
    assert attempts == []
