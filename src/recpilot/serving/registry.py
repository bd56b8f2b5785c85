"""Model registry and hot reload.

A registry is a folder of versioned artefact directories with a ``current`` pointer::

    ROOT/versions/v0001/   an artefact (see `recpilot.models.artifact`)
    ROOT/versions/v0002/
    ROOT/current           the text "v0002": the version to serve

`ModelHolder` serves either a registry root or a single artefact directory. Reloading builds
the new `ServedModel` completely off to the side and then swaps it in with one reference
assignment, so a request (which reads `ModelHolder.current` once and keeps that object) never
sees a half-loaded model and never fails because of a swap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recpilot.errors import ArtifactError
from recpilot.models.artifact import META, read_meta, verify
from recpilot.models.base import Recommender

logger = logging.getLogger(__name__)

VERSIONS = "versions"
CURRENT = "current"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what describes it; never modified after construction."""

    model: Recommender
    version: str
    path: Path
    loaded_at: float
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name

    def item_index(self, item_id: str) -> int:
        """The model's index of an external item id, or -1."""
        assert self.model.items_ is not None
        return self.model.items_.get(item_id)

    def item_indices(self, item_ids: Sequence[str]) -> list[int]:
        """The model's indices of external item ids (-1 for unknown ones)."""
        assert self.model.items_ is not None
        return self.model.items_.get_many(item_ids)

    def item_ids(self, indices: np.ndarray) -> list[str]:
        """External ids (as strings) of item indices."""
        assert self.model.items_ is not None
        return [str(i) for i in self.model.items_.lookup(indices)]


def _check_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ArtifactError(
            f"invalid model version {version!r}: use letters, digits, '.', '_' and '-' "
            "(at most 100 characters, starting with a letter or digit)"
        )
    return version


class ModelRegistry:
    """Versioned artefact directories under ``root`` and the ``current`` pointer.

    Args:
        root: the registry folder (created by `publish`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def is_registry(path: str | Path) -> bool:
        """True when ``path`` looks like a registry root rather than one artefact."""
        path = Path(path)
        return (path / VERSIONS).is_dir() and not (path / META).exists()

    def versions(self) -> list[str]:
        """Published versions, sorted by name."""
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / META).is_file())

    def path(self, version: str) -> Path:
        path = self.root / VERSIONS / _check_version(version)
        if not (path / META).is_file():
            known = ", ".join(self.versions()) or "none"
            raise ArtifactError(
                f"model version {version!r} is not in the registry {self.root} (versions: {known})"
            )
        return path

    def current_version(self) -> str:
        """The version the ``current`` pointer names."""
        pointer = self.root / CURRENT
        if not pointer.is_file():
            raise ArtifactError(
                f"model registry {self.root} has no {CURRENT} pointer: publish a model with "
                "make_current=True or call set_current(version)"
            )
        return _check_version(pointer.read_text(encoding="utf-8").strip())

    def set_current(self, version: str) -> None:
        """Point ``current`` at a published version (atomic rename of a temporary file)."""
        self.path(version)
        fd, tmp = tempfile.mkstemp(prefix=f".{CURRENT}.", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / CURRENT)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        logger.info("model registry %s: current → %s", self.root, version)

    def next_version(self) -> str:
        numbers = [int(v[1:]) for v in self.versions() if re.fullmatch(r"v\d+", v)]
        return f"v{max(numbers, default=0) + 1:04d}"

    def publish(
        self, artifact: str | Path, version: str | None = None, make_current: bool = False
    ) -> str:
        """Copy a verified artefact directory into the registry as a new version.

        Args:
            artifact: the artefact to publish (left untouched).
            version: its name; by default the next ``vNNNN``.
            make_current: also point ``current`` at it.

        Returns:
            the version name.
        """
        verify(Path(artifact))
        (self.root / VERSIONS).mkdir(parents=True, exist_ok=True)
        version = _check_version(version or self.next_version())
        dest = self.root / VERSIONS / version
        if dest.exists():
            raise ArtifactError(f"model version {version!r} already exists in {self.root}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=self.root / VERSIONS))
        try:
            shutil.copytree(artifact, tmp, dirs_exist_ok=True)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("model registry %s: published %s from %s", self.root, version, artifact)
        if make_current:
            self.set_current(version)
        return version


def artifact_version(path: Path, meta: dict[str, Any]) -> str:
    """Version name of a single artefact directory: its name and a weights checksum prefix."""
    digest = str(meta.get("sha256", {}).get("weights.safetensors", ""))[:8] or "unknown"
    return f"{path.name}-{digest}"


def load_served(path: Path, version: str) -> ServedModel:
    """Load and verify an artefact as a `ServedModel`."""
    start = time.perf_counter()
    model = Recommender.load(path)
    meta = read_meta(path)
    metrics: dict[str, Any] = {}
    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError:
            logger.warning("%s is not valid JSON; serving without offline metrics", metrics_file)
    logger.info(
        "loaded model %s (%s, %d items) from %s in %.2fs",
        version,
        model.name,
        model.n_items,
        path,
        time.perf_counter() - start,
    )
    return ServedModel(model, version, path, time.time(), meta, metrics)


class ModelHolder:
    """The model being served, swapped atomically on `reload`.

    Args:
        source: a registry root (serves its ``current`` version) or one artefact directory
            (reload re-reads it, e.g. after ``recpilot train --output-dir`` replaced it).
    """

    def __init__(self, source: str | Path) -> None:
        self.source = Path(source)
        self._served: ServedModel | None = None
        self._reload_lock = threading.Lock()

    @property
    def registry(self) -> ModelRegistry | None:
        """The registry when serving one, else None."""
        return ModelRegistry(self.source) if ModelRegistry.is_registry(self.source) else None

    @property
    def current(self) -> ServedModel:
        """The served model; read it once per request and use that object throughout."""
        served = self._served
        if served is None:
            raise ArtifactError("no model is loaded yet: call load() first")
        return served

    @property
    def loaded(self) -> bool:
        return self._served is not None

    def _resolve(self, version: str | None) -> tuple[Path, str]:
        registry = self.registry
        if registry is None:
            if version is not None:
                raise ArtifactError(
                    f"{self.source} is a single artefact, not a model registry: "
                    "a version cannot be chosen"
                )
            if not self.source.is_dir():
                raise ArtifactError(f"artefact directory {self.source} does not exist")
            return self.source, artifact_version(self.source, read_meta(self.source))
        name = version if version is not None else registry.current_version()
        return registry.path(name), name

    def load(
        self,
        version: str | None = None,
        prepare: Callable[[ServedModel], object] | None = None,
    ) -> ServedModel:
        """Load the current (or the given registry) version and serve it; returns it.

        The previous model keeps answering until the new one is fully loaded and ``prepare``
        (e.g. building its ANN index) has run on it; a failed load or ``prepare`` leaves the
        previous model (and the registry's ``current`` pointer) in place and raises.
        """
        with self._reload_lock:
            path, name = self._resolve(version)
            served = load_served(path, name)
            if prepare is not None:
                prepare(served)
            registry = self.registry
            if registry is not None and version is not None:
                registry.set_current(version)
            self._served = served  # one reference assignment: the atomic swap
        return served

    def swap_model(self, expected: ServedModel, model: Recommender) -> bool:
        """Serve ``model`` (same version) in place of ``expected``'s, e.g. grown by new items.

        Returns False, changing nothing, when another model was swapped in meanwhile.
        """
        with self._reload_lock:
            if self._served is not expected:
                return False
            self._served = dataclasses.replace(expected, model=model)
        return True

    def reload(
        self,
        version: str | None = None,
        prepare: Callable[[ServedModel], object] | None = None,
    ) -> tuple[str | None, str]:
        """`load` again; returns ``(previous version, new version)``."""
        previous = self._served.version if self._served is not None else None
        served = self.load(version, prepare)
        if previous != served.version:
            logger.info("model swapped: %s → %s", previous, served.version)
        return previous, served.version
