"""Model artefacts: one directory per trained model, never pickle.

Layout::

    DIR/weights.safetensors   learned arrays
    DIR/config.json           {"model": name, "config": resolved model config}
    DIR/vocab/users.parquet   external user ids in index order
    DIR/vocab/items.parquet   external item ids in index order
    DIR/meta.json             package version, creation time, sha256 of every file above
    DIR/metrics.json          optional, written by the CLI after evaluation

Directories are written next to their destination and renamed into place, so a crash never
leaves a half-written artefact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from recpilot import __version__
from recpilot.data.vocab import Vocabulary
from recpilot.errors import ArtifactError

if TYPE_CHECKING:
    from recpilot.models.base import Recommender

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
META = "meta.json"
USERS = "vocab/users.parquet"
ITEMS = "vocab/items.parquet"
CHECKED = (WEIGHTS, CONFIG, USERS, ITEMS)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move a fully written ``tmp`` directory onto ``dest`` (replacing it)."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def save_model(model: Recommender, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        state = {k: np.ascontiguousarray(v) for k, v in model._state().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(
            json.dumps(
                {"model": model.name, "config": model.config.model_dump(mode="json")}, indent=2
            )
        )
        (tmp / "vocab").mkdir()
        assert model.users_ is not None and model.items_ is not None
        model.users_.save(tmp / USERS)
        model.items_.save(tmp / ITEMS)
        meta = {
            "recpilot_version": __version__,
            "model": model.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "n_users": len(model.users_),
            "n_items": len(model.items_),
            "sha256": {name: sha256_file(tmp / name) for name in CHECKED},
        }
        if (path / "metrics.json").exists():
            shutil.copy2(path / "metrics.json", tmp / "metrics.json")
        write_json_atomic(tmp / META, meta)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise ArtifactError(f"{path} is not a RecPilot artefact: {META} is missing")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    return meta


def verify(path: Path) -> dict[str, Any]:
    """Check every file's checksum; return the metadata."""
    meta = read_meta(path)
    for name, expected in meta.get("sha256", {}).items():
        file = Path(path) / name
        if not file.is_file():
            raise ArtifactError(f"artefact {path} is incomplete: {name} is missing")
        if sha256_file(file) != expected:
            raise ArtifactError(
                f"artefact {path} is corrupted: the checksum of {name} does not match meta.json"
            )
    return meta


def load_model(path: Path) -> Recommender:
    from recpilot.models.registry import model_from_config

    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"artefact directory {path} does not exist")
    verify(path)
    spec = json.loads((path / CONFIG).read_text())
    model = model_from_config({"name": spec["model"], **spec["config"]})
    model.users_ = Vocabulary.load(path / USERS, name="user")
    model.items_ = Vocabulary.load(path / ITEMS, name="item")
    model._set_state(load_file(str(path / WEIGHTS)))
    return model
