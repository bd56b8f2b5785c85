"""The one progress-bar helper of the library (tqdm underneath)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars show on an interactive stderr unless ``RECPILOT_PROGRESS=0``."""
    flag = os.environ.get("RECPILOT_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar written to stderr."""
    if disable is None:
        disable = not progress_enabled()
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False)


def progress_bar(total: int, desc: str, unit: str = "it", disable: bool | None = None) -> tqdm:
    """A bar advanced by hand (``bar.update(n)``, ``bar.set_postfix_str(...)``, ``bar.close()``).

    For loops that know more than an iterable can say, e.g. a training epoch showing its
    running loss and throughput.
    """
    if disable is None:
        disable = not progress_enabled()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False)
