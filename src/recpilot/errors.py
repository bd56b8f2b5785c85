"""The one error hierarchy of RecPilot.

Every message says what was wrong and, where possible, how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class RecPilotError(Exception):
    """Base class of every error RecPilot raises on purpose."""


class ConfigError(RecPilotError, ValueError):
    """A configuration file or option is invalid."""


class DataError(RecPilotError, ValueError):
    """Input data cannot be read or does not match the expected schema.

    Args:
        message: what is wrong and what was expected.
        path: the file that holds the problem, if any.
        row: the 1-based line number in that file, if known.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, row: int | None = None):
        self.path = str(path) if path is not None else None
        self.row = row
        where = ""
        if self.path is not None:
            where = self.path + (f", line {row}" if row is not None else "") + ": "
        elif row is not None:
            where = f"line {row}: "
        super().__init__(where + message)


class EmptyDataError(DataError):
    """A file or table holds no events."""


class SchemaError(DataError):
    """Missing, misnamed or mistyped columns."""


class UnknownIdError(RecPilotError, KeyError):
    """An external id is not in a vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class NotFittedError(RecPilotError, RuntimeError):
    """A model was used before `fit` (or `load`)."""


class ArtifactError(RecPilotError, OSError):
    """A model artefact directory is missing, incomplete or corrupted."""
