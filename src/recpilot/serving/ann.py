"""Approximate nearest-neighbour candidate retrieval for large catalogues (faiss HNSW).

A model whose scores are inner products ``q · v_i`` of a query vector and item vectors (the
sequence models' tied head, ALS factors) can be served over millions of items without scoring
every item per request: the index returns the ``n`` items with the largest inner products
(approximately), and only those are scored exactly, filtered and cut to ``k``.

`CandidateIndex` wraps ``faiss.IndexHNSWFlat`` with the inner-product metric. (The classic
reduction of inner-product search to L2 search, Bachrach et al. 2014, was tried and dropped: on
the 1M-item benchmark's vectors it recalled 24% of the exact top-10 within 500 candidates, the
inner-product graph 85%.) Index positions are the model's item indices. Building shows a progress bar; ``save``/``load`` write faiss's own
index format plus a JSON file with the vectors' fingerprint, so an index is never used with
other vectors than those it was built from.

Example:
    >>> index = CandidateIndex.build(item_vectors)  # doctest: +SKIP
    >>> ids, scores = index.search(query_vectors, 200)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recpilot.errors import ArtifactError
from recpilot.progress import progress

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "index.json"


def _faiss() -> Any:
    import faiss  # a large import: only where an index is used

    return faiss


def single_threaded_search() -> None:
    """Make faiss run single-threaded from now on (a process-wide setting).

    A search for one query gains nothing from threads, and faiss's OpenMP threads spin after
    each call: the PyTorch operators that run next then compete with them for the cores. Seen
    here: one request over 1,000,000 items took 269 ms with faiss's default threads and 16 ms
    with one.
    """
    _faiss().omp_set_num_threads(1)


def fingerprint(vectors: np.ndarray) -> str:
    """sha256 of the vectors' shape and float32 bytes (identifies what an index was built on)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    h = hashlib.sha256(f"{v.shape}".encode())
    h.update(v.tobytes())
    return h.hexdigest()


def _check_vectors(vectors: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array (rows, dimensions), got shape {v.shape}")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"{what} have {v.shape[1]} dimensions, the index has {dim}")
    v = np.ascontiguousarray(v, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return v


@dataclass(frozen=True)
class IndexParams:
    """HNSW settings (Malkov & Yashunin 2018).

    Attributes:
        m: graph degree (memory ~ ``I × m × 8`` bytes on top of the vectors).
        ef_construction: candidate list while building (higher: better graph, slower build).
        ef_search: candidate list while searching (higher: better recall, slower search); it
            is raised to the number of results asked for when smaller.
    """

    m: int = 32
    ef_construction: int = 80
    ef_search: int = 128


class CandidateIndex:
    """An inner-product HNSW index over item vectors (see the module docstring).

    Build with `CandidateIndex.build` or `CandidateIndex.load`.
    """

    def __init__(self, index: Any, n_items: int, dim: int, params: IndexParams, key: str) -> None:
        self._index = index
        self.n_items = n_items
        self.dim = dim
        self.params = params
        self.fingerprint = key

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        params: IndexParams | None = None,
        chunk: int = 50_000,
        show_progress: bool | None = None,
    ) -> CandidateIndex:
        """Index ``(I, D)`` item vectors; row ``i`` is found as item ``i``.

        Raises:
            ValueError: vectors that are not a finite 2-d array, or an empty catalogue.
        """
        faiss = _faiss()
        params = params or IndexParams()
        v = _check_vectors(vectors, "item vectors")
        if len(v) == 0:
            raise ValueError("cannot index an empty catalogue (0 item vectors)")
        started = time.perf_counter()
        index = faiss.IndexHNSWFlat(v.shape[1], params.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        built = cls(index, 0, v.shape[1], params, fingerprint(v))
        starts = range(0, len(v), chunk)
        for lo in progress(
            starts,
            f"HNSW index of {len(v):,} items",
            total=len(starts),
            unit="chunk",
            disable=None if show_progress is None else not show_progress,
        ):
            index.add(v[lo : lo + chunk])
        built.n_items = len(v)
        logger.info(
            "built an HNSW index of %d × %d vectors in %.1fs",
            len(v),
            v.shape[1],
            time.perf_counter() - started,
        )
        return built

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The (approximately) ``n`` items with the largest inner product with each query.

        Args:
            queries: ``(b, D)`` query vectors.
            n: results per query.

        Returns:
            ``(ids (b, n) int64, scores (b, n) float32)``, best first; ``-1`` / ``-inf`` pad
            rows when fewer than ``n`` items were found (e.g. ``n`` above the catalogue size).
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        q = _check_vectors(queries, "query vectors", self.dim)
        want = min(n, self.n_items)
        self._index.hnsw.efSearch = max(self.params.ef_search, want)
        scores, ids = self._index.search(q, want)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if want < n:
            pad = n - want
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, scores

    def add(self, vectors: np.ndarray) -> None:
        """Append items (their indices continue after the current last one)."""
        v = _check_vectors(vectors, "item vectors", self.dim)
        self._index.add(v)
        self.n_items += len(v)
        self.fingerprint = ""  # no longer the fingerprint of one array; save() still works

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss`` and ``index.json`` into ``directory`` (created)."""
        faiss = _faiss()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{INDEX_FILE}.tmp"
        faiss.write_index(self._index, str(tmp))
        tmp.replace(path / INDEX_FILE)
        meta = {
            "kind": "hnsw-inner-product",
            "n_items": self.n_items,
            "dim": self.dim,
            "m": self.params.m,
            "ef_construction": self.params.ef_construction,
            "ef_search": self.params.ef_search,
            "fingerprint": self.fingerprint,
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path, vectors: np.ndarray | None = None) -> CandidateIndex:
        """Read an index written by `save`.

        Args:
            directory: where it was saved.
            vectors: when given, the index must have been built from exactly these.

        Raises:
            ArtifactError: missing or unreadable files, or an index of other vectors.
        """
        faiss = _faiss()
        path = Path(directory)
        try:
            meta = json.loads((path / META_FILE).read_text())
            index = faiss.read_index(str(path / INDEX_FILE))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"cannot read the candidate index in {path}: {exc}") from exc
        if meta.get("kind") != "hnsw-inner-product":
            raise ArtifactError(
                f"the candidate index in {path} is of kind {meta.get('kind')!r}, this version "
                "reads 'hnsw-inner-product'; rebuild it"
            )
        if vectors is not None and fingerprint(vectors) != meta["fingerprint"]:
            raise ArtifactError(
                f"the candidate index in {path} was built from other item vectors (the model "
                "changed since); rebuild it"
            )
        params = IndexParams(meta["m"], meta["ef_construction"], meta["ef_search"])
        return cls(
            index,
            int(meta["n_items"]),
            int(meta["dim"]),
            params,
            meta["fingerprint"],
        )


def load_or_build(
    directory: str | Path, vectors: np.ndarray, params: IndexParams | None = None
) -> CandidateIndex:
    """The index saved in ``directory`` when it matches ``vectors``, else a new one (saved)."""
    path = Path(directory)
    if (path / META_FILE).is_file():
        try:
            return CandidateIndex.load(path, vectors)
        except ArtifactError as exc:
            logger.warning("%s; building a new one", exc)
    index = CandidateIndex.build(vectors, params)
    try:
        index.save(path)
    except OSError as exc:  # a read-only artefact directory: serve without caching
        logger.warning("could not save the candidate index to %s: %s", path, exc)
    return index


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top items that the approximate search found."""
    hits = [
        len(set(f[f >= 0].tolist()) & set(e[e >= 0].tolist()))
        for f, e in zip(found, exact, strict=True)
    ]
    sizes = [max(1, int((e >= 0).sum())) for e in exact]
    return float(np.mean([h / s for h, s in zip(hits, sizes, strict=True)]))
