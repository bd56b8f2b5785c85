"""Shared helpers for benchmark scripts: machine facts, versions, peak memory, Markdown."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("RECPILOT_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data").resolve()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores available{mem}, {platform.system()} {platform.release()}"


def versions() -> str:
    names = ["recpilot", "torch", "numpy", "scipy", "polars", "implicit"]
    parts = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except Exception:
            parts.append(f"{name} ?")
    return ", ".join(parts)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except Exception:
        return "unknown"


def today() -> str:
    return time.strftime("%Y-%m-%d")


def replace_section(path: Path, marker: str, body: str) -> None:
    """Replace the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` (or append)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# RecPilot benchmarks\n\n"
    if start in text and end in text:
        before = text[: text.index(start)]
        after = text[text.index(end) + len(end) :].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
