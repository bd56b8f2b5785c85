"""Readers: event logs on disk → `EventLog` (canonical events plus optional side tables).

Entry points are `read_events` (a `DataConfig`) and `read_dataset` (a path, a format and
`DataConfig` fields as keywords); `detect_format` guesses the format of a path.

Formats:

- ``csv``, ``parquet``, ``jsonl``: generic logs; `ColumnMapping` names the source column of
  each canonical field. When ``event_type``, ``value`` or ``session_id`` is not mapped and
  the file has a column of that very name, that column is used (a log's event types are not
  dropped silently). The path is a file, or a folder that holds exactly one such file.
  ``items_path``/``users_path`` add side tables (``.csv``/``.tsv``, ``.parquet``,
  ``.jsonl``/``.ndjson``), keyed by the columns the mapping names for item and user ids (or
  by ``item_id``/``user_id`` columns), renamed to ``item_id``/``user_id``.
- ``movielens-100k`` (``u.data``, ``u.item``, ``u.user``), ``movielens-1m`` (``ratings.dat``,
  ``movies.dat``, ``users.dat``), ``movielens-latest`` (``ratings.csv``, ``movies.csv``,
  optional ``tags.csv`` and ``links.csv``): a folder (or any file inside it). Events are
  ``rating`` events whose ``value`` is the rating; ids must be integers. Item tables hold
  ``genres`` as a list of strings (``tags`` too, for ``movielens-latest``). MovieLens files are read with their own
  fixed encodings (Latin-1 for the ``.dat`` and ``u.*`` files); ``encoding`` applies to the
  CSV files of ``movielens-latest``.
- ``sequence-lines``: one line per user, ``user item item ...`` in time order (the
  SASRec/S3-Rec layout; a user may also span several lines, as in the older ``user item``
  layout, whose positions then continue). ``timestamp`` is the position in the user's
  sequence and ``EventLog.has_timestamps`` is False. Next to the ml-1m sequence file,
  ``*_to_original_items.txt`` + ``movies.dat`` and ``*_to_original_users.txt`` +
  ``users.dat`` become the item and user side tables.

Typing of ids: text sources (CSV, JSONL, sequences) give Int64 ids when every id of the
column is an integer without a leading zero, else String ids; Parquet keeps its own types (integers → Int64, strings → String). In sequence files, a column of integer ids with a
few non-integer tokens is an error (a corrupted line), not a silent switch to strings.

Policy on bad input: every problem with a location raises a `DataError` (or `SchemaError`,
`EmptyDataError`) that names the file, the 1-based line (counting the header line; "row" for
Parquet), the offending value and what was expected. What is repaired instead is counted in
``EventLog.report``, never silent:

- blank lines are skipped (counted), in event files and side tables;
- an empty event type becomes ``default_event_type`` (counted);
- side-table rows that repeat a key: the first row is kept, later ones dropped (counted);
- events whose item (user) is missing from a side table are kept (counted).

Readers keep duplicate events: deduplication is preprocessing's job. Readers never write.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import polars as pl
from pydantic import ValidationError

from recpilot.config import ColumnMapping, DataConfig, DataFormat
from recpilot.data.schema import EventLog, EventType, RepairReport, canonical
from recpilot.errors import ConfigError, DataError, EmptyDataError, SchemaError

logger = logging.getLogger(__name__)

__all__ = ["detect_format", "read_dataset", "read_events"]

_IdRule = Literal["auto", "integer", "majority"]
_ROW = "__row__"  # 0-based record index in the source file, kept for error messages
_UNIT_TO_MS: dict[str, tuple[int, int]] = {  # unit -> (multiply, then floor-divide)
    "s": (1000, 1),
    "ms": (1, 1),
    "us": (1, 1_000),
    "ns": (1, 1_000_000),
}
_UNIT_WORDS = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
}
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv"),
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
}
_ML100K_GENRES = tuple(
    [
        "unknown",
        "Action",
        "Adventure",
        "Animation",
        "Children's",
        "Comedy",
        "Crime",
        "Documentary",
        "Drama",
        "Fantasy",
        "Film-Noir",
        "Horror",
        "Musical",
        "Mystery",
        "Romance",
        "Sci-Fi",
        "Thriller",
        "War",
        "Western",
    ]
)
_ML1M_OCCUPATIONS = tuple(
    [
        "other",
        "academic/educator",
        "artist",
        "clerical/admin",
        "college/grad student",
        "customer service",
        "doctor/health care",
        "executive/managerial",
        "farmer",
        "homemaker",
        "K-12 student",
        "lawyer",
        "programmer",
        "retired",
        "sales/marketing",
        "scientist",
        "self-employed",
        "technician/engineer",
        "tradesman/craftsman",
        "unemployed",
        "writer",
    ]
)


# -- public API -----------------------------------------------------------------------------------
def read_events(config: DataConfig) -> EventLog:
    """Read the event log that ``config`` describes.

    Args:
        config: where the data is (``path``), its ``format``, the column mapping (generic
            formats), ``encoding``, ``separator`` and optional side tables.

    Returns:
        The canonical events in source order, side tables when the format has them, and the
        repairs made while reading.

    Raises:
        DataError: the path is missing, or a value cannot be read (the message names the file,
            the line and the value).
        SchemaError: a column is missing or misnamed.
        EmptyDataError: a file holds no events.
        ConfigError: the configuration cannot be used (unknown encoding, bad separator).
    """
    if config.format == "synthetic":
        raise DataError(
            "format 'synthetic' has no file to read: synthetic logs come from the simulator "
            "(recpilot.data.simulator); set data.format to a file format to read a log"
        )
    reader = _READERS.get(config.format)
    if reader is None:  # pragma: no cover - DataFormat and _READERS are kept in step
        raise ConfigError(
            f"unknown data format {config.format!r}; expected one of {sorted(_READERS)}"
        )
    log = reader(config)
    if logger.isEnabledFor(logging.INFO):  # counting distinct ids costs time on large logs
        logger.info(
            "read %s events (%s users, %s items) from %s",
            f"{log.events.height:,}",
            f"{log.events['user_id'].n_unique():,}",
            f"{log.events['item_id'].n_unique():,}",
            log.source,
        )
    return log


def read_dataset(
    path: str | Path, format: DataFormat | None = None, **data_config_fields: Any
) -> EventLog:
    """Read an event log from ``path`` (a convenience around `read_events`).

    Args:
        path: a file or a folder.
        format: one of `DataFormat`; None guesses it with `detect_format`.
        **data_config_fields: other `DataConfig` fields, e.g. ``columns={"user_id": "uid"}``,
            ``separator=";"``, ``encoding="latin-1"``, ``items_path=...``.

    Returns:
        The `EventLog` read.

    Raises:
        ConfigError: a keyword is not a valid `DataConfig` field or value.
        DataError: see `read_events`.
    """
    fmt = format if format is not None else detect_format(path)
    try:
        config = DataConfig(path=Path(path), format=fmt, **data_config_fields)
    except ValidationError as exc:
        lines = [f"invalid data options for {path}:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc
    return read_events(config)


def detect_format(path: str | Path) -> DataFormat:
    """Guess the format of a file or folder from its name and contents.

    Raises:
        DataError: the path does not exist or its format cannot be told.
    """
    path = _existing(Path(path))
    if path.is_file():
        suffix = path.suffix.lower()
        for fmt, suffixes in _SUFFIXES.items():
            if suffix in suffixes:
                return fmt  # type: ignore[return-value]
        if suffix == ".txt":
            return "sequence-lines"
        if path.name in ("u.data", "ratings.dat"):
            path = path.parent
        else:
            raise DataError(
                "cannot tell the format from the file name; set the format explicitly "
                "(csv, parquet, jsonl, sequence-lines, movielens-100k, movielens-1m, "
                "movielens-latest)",
                path=path,
            )
    names = {p.name for p in path.iterdir()}
    if "u.data" in names:
        return "movielens-100k"
    if "ratings.dat" in names:
        return "movielens-1m"
    if "ratings.csv" in names and "movies.csv" in names:
        return "movielens-latest"
    if _sequence_candidates(path):
        return "sequence-lines"
    for fmt, suffixes in _SUFFIXES.items():
        if any(Path(n).suffix.lower() in suffixes for n in names):
            return fmt  # type: ignore[return-value]
    raise DataError(
        f"cannot tell the format of this folder (it holds {_listing(path)}); set the format "
        "explicitly",
        path=path,
    )


# -- locating problems ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Locator:
    """Turns a record index of a parsed file into the line a person can open.

    Attributes:
        path: the file.
        layout: ``lines``: one record per physical line (no quoting); ``csv``: quoted fields
            may span lines; ``jsonl``: blank lines are not records; ``parquet``: rows.
        header: the first line is a header (counted in line numbers).
        separator: the CSV field separator (``csv`` layout).
        encoding: the text encoding (re-reading the file on the error path).
    """

    path: Path
    layout: Literal["lines", "csv", "jsonl", "parquet"]
    header: bool = False
    separator: str = ","
    encoding: str = "utf-8"

    def line(self, record: int) -> int:
        """The 1-based line (row for Parquet) where the 0-based ``record`` starts."""
        if self.layout in ("lines", "parquet"):
            return record + 1 + int(self.header)
        if self.layout == "jsonl":
            return _nth_nonblank_line(self.path, record, self.encoding)
        return _csv_record_line(self.path, record, self.header, self.separator, self.encoding)

    def error(
        self, message: str, record: int | None = None, cls: type[DataError] = DataError
    ) -> DataError:
        """An error of class ``cls`` located at ``record`` (or at the whole file)."""
        if record is None:
            return cls(message, path=self.path)
        if self.layout == "parquet":
            exc = cls(f"row {record + 1}: {message}", path=self.path)
            exc.row = record + 1
            return exc
        return cls(message, path=self.path, row=self.line(record))


def _csv_record_line(path: Path, record: int, header: bool, separator: str, encoding: str) -> int:
    target = record + int(header)
    if b'"' not in path.read_bytes():
        return target + 1  # no quoting: one record per line (blank lines are null records)
    end = 0
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator)
        for index, _ in enumerate(reader):
            if index == target:
                return end + 1
            end = reader.line_num
    return end + 1


def _nth_nonblank_line(path: Path, record: int, encoding: str) -> int:
    seen = -1
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        number = 0
        for number, line in enumerate(fh, 1):
            if line.strip():
                seen += 1
                if seen == record:
                    return number
    return number + 1


def _raise_first(
    loc: _Locator,
    rows: pl.Series,
    mask: pl.Series,
    values: pl.Series,
    describe: Callable[[Any], str],
    cls: type[DataError] = DataError,
) -> NoReturn:
    """Raise for the first row where ``mask`` holds, saying how many more rows fail."""
    bad = mask.fill_null(False).arg_true()
    first = int(bad[0])
    message = describe(values[first])
    if len(bad) > 1:
        more = len(bad) - 1
        message += f" ({more:,} more row{'s' if more > 1 else ''} with the same problem)"
    raise loc.error(message, int(rows[first]), cls)


def _suggest(wanted: str, found: Sequence[str]) -> str | None:
    """The found column most like ``wanted`` (case, ``_`` and spaces ignored first)."""

    def norm(name: str) -> str:
        return re.sub(r"[\s_\-.]", "", name).lower()

    for name in found:
        if norm(name) == norm(wanted):
            return name
    close = difflib.get_close_matches(wanted, list(found), n=1, cutoff=0.6)
    if close:
        return close[0]
    by_norm = {norm(name): name for name in found}
    close = difflib.get_close_matches(norm(wanted), list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def _require_columns(
    found: Sequence[str],
    wanted: Mapping[str, str],
    loc: _Locator,
    *,
    setting: str | None = "columns",
    hint: str = "",
) -> None:
    """Raise `SchemaError` for the first wanted column (``field -> source name``) not found."""
    for field_name, column in wanted.items():
        if column in found:
            continue
        message = f"column {column!r} ({field_name}) not found; columns found: {list(found)}"
        guess = _suggest(column, found)
        if hint:
            message += hint
        elif guess is not None:
            message += f"; did you mean {guess!r}?"
            if setting is not None:
                message += f" (set {setting}.{field_name}: {guess})"
        elif setting is not None:
            message += f"; name the right column with {setting}.{field_name}"
        raise loc.error(message, cls=SchemaError)


# -- files, folders and encodings -----------------------------------------------------------------
def _existing(path: Path) -> Path:
    if not path.exists():
        parent = path.parent
        extra = f" ({parent} holds {_listing(parent)})" if parent.is_dir() else ""
        raise DataError(f"no such file or folder{extra}", path=path)
    return path


def _listing(folder: Path, limit: int = 12) -> str:
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _config_path(config: DataConfig) -> Path:
    if config.path is None:
        raise DataError(f"data.path is not set; format {config.format!r} needs a file or folder")
    return _existing(Path(config.path))


def _single_file(path: Path, kind: str) -> Path:
    """``path`` itself, or the one file of this kind in the folder ``path``."""
    if path.is_file():
        return path
    suffixes = _SUFFIXES[kind]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if len(files) == 1:
        return files[0]
    if not files:
        raise DataError(
            f"folder holds no {'/'.join(suffixes)} file (it holds {_listing(path)}); point "
            "data.path at the event file",
            path=path,
        )
    raise DataError(
        f"folder holds {len(files)} {kind} files ({', '.join(p.name for p in files)}); point "
        "data.path at the event file (side tables go in items_path / users_path)",
        path=path,
    )


def _folder_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _need(folder: Path, name: str, fmt: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"format {fmt!r} needs {name} in this folder, which holds {_listing(folder)}",
            path=folder,
        )
    return path


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(
            f"unknown text encoding {encoding!r}; use e.g. utf-8, latin-1 or cp1252"
        ) from None


def _is_utf8(codec: str) -> bool:
    return codec in ("utf-8", "utf-8-sig")


def _encoding_error(path: Path, data: bytes, exc: UnicodeDecodeError, encoding: str) -> DataError:
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    bad = data[exc.start : max(exc.end, exc.start + 1)][:4]
    return DataError(
        f"cannot decode byte(s) {bad.hex(' ')} at column {column} as {encoding} "
        f"({exc.reason}); the file is in another encoding, probably Latin-1 or Windows-1252: "
        "set `encoding: latin-1` (or cp1252) in the data config",
        path=path,
        row=line,
    )


def _decode(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, data, exc, encoding) from None


def _utf8_source(path: Path, encoding: str) -> Path | bytes:
    """What polars should read: the path itself for UTF-8, else the text re-encoded."""
    codec = _codec(encoding)
    if _is_utf8(codec):
        return path
    return _decode(path.read_bytes(), codec, path).encode("utf-8")


def _as_polars_input(source: Path | bytes) -> Path | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _check_not_empty(path: Path, what: str = "events") -> None:
    if path.stat().st_size == 0:
        raise EmptyDataError(f"file is empty (0 bytes); expected {what}", path=path)


def _polars_failure(exc: Exception, path: Path, encoding: str, what: str) -> DataError:
    """A located error for a polars parse failure (found by re-reading on this error path)."""
    text = str(exc)
    if "utf-8" in text.lower() or "utf8" in text.lower():
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as dec:
            return _encoding_error(path, data, dec, encoding)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return DataError(f"cannot be parsed as {what}: {first_line}", path=path)


# -- reading text and binary tables ---------------------------------------------------------------
@dataclass
class _Table:
    """Parsed columns (String for text sources) plus ``__row__``, and where they came from."""

    frame: pl.DataFrame
    loc: _Locator

    @property
    def rows(self) -> pl.Series:
        return self.frame[_ROW]


def _csv_header(path: Path, source: Path | bytes, separator: str, encoding: str) -> list[str]:
    try:
        head = pl.read_csv(
            _as_polars_input(source), n_rows=0, infer_schema=False, separator=separator
        )
    except pl.exceptions.NoDataError:
        raise EmptyDataError(
            "file holds no lines; expected a header and events", path=path
        ) from None
    except pl.exceptions.PolarsError as exc:
        raise _polars_failure(exc, path, encoding, "CSV") from exc
    return head.columns


def _separator_hint(header: Sequence[str], separator: str) -> str:
    if len(header) != 1:
        return ""
    for candidate, name in (("\t", "a tab"), (";", "';'"), ("|", "'|'"), (",", "','")):
        if candidate != separator and candidate in header[0]:
            return (
                f"; the header is one column holding {name}: the file seems to be separated by "
                f"{name}, set `separator` accordingly"
            )
    return ""


def _read_csv_table(
    path: Path,
    columns: Sequence[str],
    *,
    separator: str,
    encoding: str,
    wanted: Mapping[str, str] | None = None,
    setting: str | None = "columns",
) -> _Table:
    """Read some columns of a CSV file with a header, every value as a string.

    ``wanted`` (field -> column) is checked against the header first (`SchemaError`).
    """
    if len(separator) != 1:
        raise ConfigError(f"separator must be one character, got {separator!r}")
    _check_not_empty(path)
    codec = _codec(encoding)
    source = _utf8_source(path, codec)
    header = _csv_header(path, source, separator, codec)
    loc = _Locator(path, "csv", header=True, separator=separator, encoding=codec)
    if wanted is not None:
        _require_columns(
            header, wanted, loc, setting=setting, hint=_separator_hint(header, separator)
        )
    try:
        frame = pl.read_csv(
            _as_polars_input(source),
            columns=list(dict.fromkeys(columns)),
            infer_schema=False,
            separator=separator,
        )
    except pl.exceptions.PolarsError as exc:
        if "more fields" in str(exc):
            raise _ragged_csv(path, len(header), separator, codec) from exc
        raise _polars_failure(exc, path, codec, "CSV") from exc
    if frame.height == 0:
        raise EmptyDataError("file holds a header but no rows", path=path)
    return _Table(frame.with_row_index(_ROW), loc)


def _ragged_csv(path: Path, n_columns: int, separator: str, encoding: str) -> DataError:
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator)
        end = 0
        for record in reader:
            if len(record) > n_columns:
                return DataError(
                    f"line has {len(record)} fields, the header has {n_columns} (separator "
                    f"{separator!r}); quote values that contain the separator",
                    path=path,
                    row=end + 1,
                )
            end = reader.line_num
    return DataError(f"a line has more fields than the header's {n_columns}", path=path)


def _read_headerless(
    path: Path,
    names: Sequence[str],
    *,
    separator: str,
    encoding: str,
    min_fields: int | None = None,
) -> _Table:
    """Read a headerless, unquoted delimited file (MovieLens layouts), every value a string.

    ``separator`` may be several characters (``::``). Lines need at least ``min_fields``
    fields (default: all); lines with more fields than ``names`` are errors.
    """
    _check_not_empty(path)
    codec = _codec(encoding)
    text = _decode(path.read_bytes(), codec, path)
    sep = separator
    if len(separator) != 1:
        sep = "\x1f"
        text = text.replace(separator, sep)
    loc = _Locator(path, "lines", encoding=codec)
    lines = text.split("\n")  # not splitlines(): Latin-1 text may hold \x85, \x1c...
    first_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first_index is None:
        raise EmptyDataError("file holds only blank lines", path=path)
    first = lines[first_index]
    needed = len(names) if min_fields is None else min_fields
    n_first = first.count(sep) + 1
    if not needed <= n_first <= len(names):
        shown = first.replace(sep, separator)
        raise loc.error(
            f"expected {len(names)} fields separated by {separator!r} ({', '.join(names)}), "
            f"found {n_first} in {shown[:120]!r}",
            record=first_index,
            cls=SchemaError,
        )
    try:
        frame = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            has_header=False,
            new_columns=list(names),
            separator=sep,
            quote_char=None,
            infer_schema=False,
        )
    except pl.exceptions.PolarsError as exc:
        if "more fields" in str(exc):
            for number, line in enumerate(lines, 1):
                if line.count(sep) + 1 > len(names):
                    raise DataError(
                        f"line has {line.count(sep) + 1} fields separated by {separator!r}, "
                        f"expected {len(names)} ({', '.join(names)})",
                        path=path,
                        row=number,
                    ) from exc
        raise _polars_failure(exc, path, codec, "delimited text") from exc
    return _Table(frame.with_row_index(_ROW), loc)


def _jsonl_keys(path: Path, text: Iterable[str], limit: int | None) -> list[str]:
    """Keys seen in the first ``limit`` records (None: all); bad JSON raises with its line."""
    keys: dict[str, None] = {}
    records = 0
    for number, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"not valid JSON ({exc.msg} at column {exc.colno}): {line.strip()[:120]!r}; "
                "expected one JSON object per line",
                path=path,
                row=number,
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"expected a JSON object per line, got {type(record).__name__}: "
                f"{line.strip()[:120]!r}",
                path=path,
                row=number,
            )
        keys.update(dict.fromkeys(record))
        records += 1
        if limit is not None and records >= limit:
            break
    if records == 0:
        raise EmptyDataError("file holds no JSON records", path=path)
    return list(keys)


def _utf8_lines(path: Path, source: Path | bytes) -> Iterator[str]:
    if isinstance(source, bytes):
        yield from io.StringIO(source.decode("utf-8"))
        return
    with path.open(encoding="utf-8", errors="strict") as fh:
        yield from fh


def _jsonl_columns(path: Path, encoding: str) -> list[str]:
    """The keys of the first 1,000 records of a JSON-lines file."""
    _check_not_empty(path)
    codec = _codec(encoding)
    source = _utf8_source(path, codec)
    try:
        return _jsonl_keys(path, _utf8_lines(path, source), limit=1000)
    except UnicodeDecodeError:
        raise _polars_failure(ValueError("utf-8"), path, codec, "JSON lines") from None


def _read_jsonl_table(
    path: Path,
    columns: Sequence[str],
    *,
    encoding: str,
    wanted: Mapping[str, str] | None = None,
    setting: str | None = "columns",
) -> _Table:
    """Read some fields of a JSON-lines file, every value as a string (nested as JSON)."""
    _check_not_empty(path)
    codec = _codec(encoding)
    source = _utf8_source(path, codec)
    loc = _Locator(path, "jsonl", encoding=codec)

    def lines() -> Iterable[str]:
        return _utf8_lines(path, source)

    try:
        keys = _jsonl_keys(path, lines(), limit=1000)
        if wanted is not None and any(c not in keys for c in wanted.values()):
            keys = _jsonl_keys(path, lines(), limit=None)  # rare columns: look at every record
    except UnicodeDecodeError:
        raise _polars_failure(ValueError("utf-8"), path, codec, "JSON lines") from None
    if wanted is not None:
        _require_columns(keys, wanted, loc, setting=setting)
    try:
        frame = pl.read_ndjson(
            _as_polars_input(source), schema={c: pl.String for c in dict.fromkeys(columns)}
        )
    except pl.exceptions.PolarsError as exc:
        with contextlib.suppress(UnicodeDecodeError):  # located by _polars_failure
            _jsonl_keys(path, lines(), limit=None)  # raises at the first bad line, if any
        raise _polars_failure(exc, path, codec, "JSON lines") from exc
    if frame.height == 0:
        raise EmptyDataError("file holds no JSON records", path=path)
    return _Table(frame.with_row_index(_ROW), loc)


def _parquet_columns(path: Path) -> list[str]:
    _check_not_empty(path)
    try:
        return list(pl.read_parquet_schema(path))
    except Exception as exc:  # pyarrow/polars raise several types for a non-Parquet file
        raise DataError(f"not a readable Parquet file: {exc}", path=path) from exc


def _read_parquet_table(
    path: Path,
    columns: Sequence[str],
    *,
    wanted: Mapping[str, str] | None = None,
    setting: str | None = "columns",
) -> _Table:
    found = _parquet_columns(path)
    loc = _Locator(path, "parquet")
    if wanted is not None:
        _require_columns(found, wanted, loc, setting=setting)
    try:
        frame = pl.read_parquet(path, columns=list(dict.fromkeys(columns)))
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot read Parquet file: {exc}", path=path) from exc
    if frame.height == 0:
        raise EmptyDataError("Parquet file holds no rows", path=path)
    return _Table(frame.with_row_index(_ROW), loc)


# -- parsing columns ------------------------------------------------------------------------------
def _is_textual(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)


def _missing_mask(values: pl.Series) -> pl.Series:
    if _is_textual(values.dtype):
        text = values.cast(pl.String)
        return text.is_null() | (text.str.strip_chars() == "")
    return values.is_null()


def _parse_ids(
    values: pl.Series,
    table: _Table,
    label: str,
    *,
    rule: _IdRule = "auto",
) -> pl.Series:
    """Ids from any column type as Int64 or String; missing ids are errors.

    Text columns become Int64 when every value is an integer without a leading zero, else
    String (``rule="auto"``); ``"integer"``: every value must be an integer (MovieLens);
    ``"majority"``: when most values are integers, the others are errors (sequence files).
    """
    loc, rows = table.loc, table.rows
    if values.null_count() or (_is_textual(values.dtype) and (values.cast(pl.String) == "").any()):
        _raise_first(loc, rows, _missing_mask(values), values, lambda v: f"{label} is missing")
    if values.dtype.is_integer():
        return values.cast(pl.Int64)
    if values.dtype.is_float():
        integral = values.is_finite() & (values == values.floor())
        if not integral.all():
            _raise_first(
                loc,
                rows,
                ~integral,
                values,
                lambda v: f"{label} {v!r} is not an integer; ids must be integers or strings",
            )
        return values.cast(pl.Int64)
    if not _is_textual(values.dtype):
        raise loc.error(
            f"{label} column has type {values.dtype}; ids must be integers or strings",
            cls=SchemaError,
        )
    text = values.cast(pl.String)
    as_int = text.cast(pl.Int64, strict=False)
    if as_int.null_count():
        text = text.str.strip_chars()
        if (text == "").any():
            _raise_first(loc, rows, text == "", values, lambda v: f"{label} is missing")
        as_int = text.cast(pl.Int64, strict=False)
    failed = as_int.is_null()
    n_failed = int(failed.sum())
    if n_failed == 0:
        if rule == "integer":
            return as_int
        leading_zero = text.str.starts_with("0") & (text.str.len_bytes() > 1)
        if not leading_zero.any():
            return as_int
        return text  # "007" and "7" are different ids
    if rule == "integer":
        _raise_first(loc, rows, failed, text, lambda v: f"{label} {v!r} is not an integer")
    if rule == "majority" and n_failed * 2 < len(text):
        _raise_first(
            loc,
            rows,
            failed,
            text,
            lambda v: (
                f"{label} {v!r} is not an integer, unlike the other "
                f"{len(text) - n_failed:,} of {len(text):,} ids"
            ),
        )
    return text


def _scale_to_ms(values: pl.Series, unit: str) -> pl.Series:
    mul, div = _UNIT_TO_MS[unit]
    if values.dtype.is_float():
        return (values * mul / div).round(0).cast(pl.Int64)
    out = values.cast(pl.Int64)
    if mul != 1:
        out = out * mul
    if div != 1:
        out = out // div
    return out


def _looks_numeric(value: Any) -> bool:
    try:
        float(str(value).strip())
    except ValueError:
        return False
    return True


def _parse_timestamps(
    values: pl.Series, table: _Table, mapping: ColumnMapping, column: str
) -> pl.Series:
    """Timestamps as Int64 milliseconds since the Unix epoch (UTC for naive date/times)."""
    loc, rows = table.loc, table.rows
    unit = mapping.timestamp_unit
    label = f"timestamp (column {column!r})"
    if values.null_count() or (_is_textual(values.dtype) and (values.cast(pl.String) == "").any()):
        _raise_first(loc, rows, _missing_mask(values), values, lambda v: f"{label} is missing")
    dtype = values.dtype
    if isinstance(dtype, pl.Datetime):
        return values.dt.epoch("ms")
    if dtype == pl.Date:
        return values.cast(pl.Datetime("ms")).dt.epoch("ms")
    if dtype.is_numeric():
        if unit == "datetime":
            raise loc.error(
                f"{label} holds numbers ({dtype}) but timestamp_unit is 'datetime'; set "
                "timestamp_unit to s, ms, us or ns",
                cls=SchemaError,
            )
        if dtype.is_float():
            finite = values.is_finite()
            if not finite.all():
                _raise_first(loc, rows, ~finite, values, lambda v: f"{label} {v!r} is not finite")
        return _scale_to_ms(values, unit)
    if not _is_textual(dtype):
        raise loc.error(
            f"{label} has type {dtype}; expected numbers or date/time strings", cls=SchemaError
        )
    text = values.cast(pl.String)
    if unit == "datetime":
        return _parse_datetime_strings(text, table, mapping, label)
    as_int = text.cast(pl.Int64, strict=False)
    if not as_int.null_count():
        return _scale_to_ms(as_int, unit)
    stripped = text.str.strip_chars()
    as_float = stripped.cast(pl.Float64, strict=False)
    as_int = stripped.cast(pl.Int64, strict=False)
    bad = as_float.is_null() | ~as_float.is_finite()
    if bad.any():
        expected = f"a number of {_UNIT_WORDS[unit]} since 1970-01-01 (timestamp_unit {unit!r})"

        def describe(value: Any) -> str:
            hint = ""
            if not _looks_numeric(value):
                hint = (
                    "; for date/time strings set timestamp_unit: datetime (ISO 8601, or "
                    "timestamp_format for another layout)"
                )
            return f"{label} {value!r} is not {expected}{hint}"

        _raise_first(loc, rows, bad, text, describe)
    ints = _scale_to_ms(as_int.fill_null(0), unit)
    floats = _scale_to_ms(as_float, unit)
    return pl.select(pl.when(as_int.is_not_null()).then(ints).otherwise(floats)).to_series()


def _iso_to_ms(value: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return math.floor(parsed.timestamp() * 1000 + 0.5)


def _parse_datetime_strings(
    text: pl.Series, table: _Table, mapping: ColumnMapping, label: str
) -> pl.Series:
    fmt = mapping.timestamp_format
    stripped = text.str.strip_chars()
    try:
        parsed = stripped.str.to_datetime(format=fmt, strict=False, time_unit="us")
        ms = parsed.dt.epoch("ms")
    except pl.exceptions.PolarsError:
        ms = pl.Series(text.name, [None] * len(text), dtype=pl.Int64)
    failed = ms.is_null()
    if failed.any() and fmt is None:
        # polars infers one layout from the first value; other ISO 8601 layouts (offsets,
        # dates without times) get a per-value second chance
        retry = stripped.filter(failed).unique()
        fixed = {v: _iso_to_ms(v) for v in retry.to_list()}
        ms = ms.fill_null(stripped.replace_strict(fixed, default=None, return_dtype=pl.Int64))
        failed = ms.is_null()
    if failed.any():
        expected = (
            f"a date/time in the format {fmt!r} (timestamp_format)"
            if fmt is not None
            else "an ISO 8601 date/time such as 2024-05-01T12:30:00Z (set timestamp_format "
            "for another layout)"
        )

        def describe(value: Any) -> str:
            hint = ""
            if _looks_numeric(value):
                hint = "; for numeric timestamps set timestamp_unit to s, ms, us or ns"
            return f"{label} {value!r} is not {expected}{hint}"

        _raise_first(table.loc, table.rows, failed, text, describe)
    return ms


def _parse_values(values: pl.Series, table: _Table, label: str) -> pl.Series:
    """Optional numbers (ratings, amounts) as Float64; empty is null, text is an error."""
    dtype = values.dtype
    if dtype.is_numeric() or dtype == pl.Boolean:
        out = values.cast(pl.Float64)
    elif _is_textual(dtype):
        text = values.cast(pl.String).str.strip_chars()
        out = text.cast(pl.Float64, strict=False)
        bad = out.is_null() & text.is_not_null() & (text != "")
        if bad.any():
            _raise_first(
                table.loc,
                table.rows,
                bad,
                values,
                lambda v: f"{label} {v!r} is not a number",
            )
    else:
        raise table.loc.error(f"{label} has type {dtype}; expected numbers", cls=SchemaError)
    if out.is_infinite().any():
        _raise_first(
            table.loc,
            table.rows,
            out.is_infinite(),
            values,
            lambda v: f"{label} {v!r} is not finite",
        )
    return out.fill_nan(None)


# -- events from a parsed table -------------------------------------------------------------------
def _events_from_table(
    table: _Table,
    fields: Mapping[str, str | None],
    mapping: ColumnMapping,
    report: RepairReport,
    *,
    skip_blank: bool,
    id_rule: _IdRule = "auto",
) -> pl.DataFrame:
    """Canonical events from parsed columns; ``fields`` maps canonical field -> source column."""
    name = table.loc.path.name
    used = [c for c in fields.values() if c is not None]
    if skip_blank:
        blank = pl.all_horizontal(pl.col(c).is_null() for c in dict.fromkeys(used))
        n_blank = table.frame.select(blank.sum()).item()
        if n_blank:
            report.add(f"skipped blank lines in {name}", n_blank)
            table = _Table(table.frame.filter(~blank), table.loc)
    if table.frame.height == 0:
        raise EmptyDataError("file holds no events (only blank lines)", path=table.loc.path)
    frame = table.frame
    user_col, item_col = fields["user_id"], fields["item_id"]
    assert user_col is not None and item_col is not None
    columns: dict[str, pl.Series] = {
        "user_id": _parse_ids(
            frame[user_col], table, f"user id (column {user_col!r})", rule=id_rule
        ),
        "item_id": _parse_ids(
            frame[item_col], table, f"item id (column {item_col!r})", rule=id_rule
        ),
    }
    ts_col = fields.get("timestamp")
    if ts_col is None:
        columns["timestamp"] = frame[_ROW].cast(pl.Int64)  # ordinal clock: the source order
    else:
        columns["timestamp"] = _parse_timestamps(frame[ts_col], table, mapping, ts_col)
    et_col = fields.get("event_type")
    if et_col is not None:
        event_type = frame[et_col].cast(pl.String)
        missing = event_type.is_null() | (event_type.str.strip_chars() == "")
        n_missing = int(missing.sum())
        if n_missing:
            report.add(
                f"filled empty event types in {name} with {mapping.default_event_type!r}",
                n_missing,
            )
            event_type = pl.select(
                pl.when(missing).then(pl.lit(mapping.default_event_type)).otherwise(event_type)
            ).to_series()
        columns["event_type"] = event_type
    value_col = fields.get("value")
    if value_col is not None:
        columns["value"] = _parse_values(frame[value_col], table, f"value (column {value_col!r})")
    session_col = fields.get("session_id")
    if session_col is not None:
        columns["session_id"] = frame[session_col].cast(pl.String)
    return canonical(pl.DataFrame(columns), default_event_type=mapping.default_event_type)


# -- side tables ----------------------------------------------------------------------------------
def _align_keys(keys: pl.Series, dtype: pl.DataType, table: _Table, label: str) -> pl.Series:
    """Side-table keys in the dtype of the event ids they join to."""
    parsed = _parse_ids(keys, table, label)
    if parsed.dtype == dtype:
        return parsed
    if dtype == pl.String:
        return parsed.cast(pl.String)
    as_int = parsed.cast(pl.Int64, strict=False)
    bad = as_int.is_null()
    if bad.any():
        _raise_first(
            table.loc,
            table.rows,
            bad,
            keys,
            lambda v: f"{label} {v!r} is not an integer, but the event log's ids are integers",
        )
    return as_int


def _dedupe_keys(frame: pl.DataFrame, key: str, source: str, report: RepairReport) -> pl.DataFrame:
    before = frame.height
    frame = frame.unique(subset=[key], keep="first", maintain_order=True)
    report.add(
        f"dropped rows of {source} that repeat an {key} (kept the first)", before - frame.height
    )
    return frame


def _count_missing(
    events: pl.DataFrame, table: pl.DataFrame | None, key: str, source: str, report: RepairReport
) -> None:
    if table is None:
        return
    missing = events.filter(~pl.col(key).is_in(table[key].implode())).height
    what = "items" if key == "item_id" else "users"
    report.add(f"events that reference {what} missing from {source}", missing)
    unused = table.filter(~pl.col(key).is_in(events[key].implode())).height
    if unused:
        logger.info("%s: %d %s without events (catalogue only)", source, unused, what)


def _read_side_table(
    path: Path,
    key_column: str,
    key: Literal["item_id", "user_id"],
    key_dtype: pl.DataType,
    config: DataConfig,
    report: RepairReport,
) -> pl.DataFrame:
    """A generic side table (csv/parquet/jsonl by suffix) keyed by ``key`` (renamed).

    The key is the column the mapping names for the ids (``columns.item_id``), or a column
    called ``item_id``/``user_id`` when the table has no such column.
    """
    path = _existing(path)
    _check_not_empty(path, "side-table rows")
    suffix = path.suffix.lower()
    codec = _codec(config.encoding)
    separator = "\t" if suffix == ".tsv" else config.separator
    if suffix in _SUFFIXES["parquet"]:
        found = _parquet_columns(path)
        loc = _Locator(path, "parquet")
    elif suffix in _SUFFIXES["jsonl"]:
        source = _utf8_source(path, codec)
        text = source.decode("utf-8") if isinstance(source, bytes) else None
        text = text if text is not None else _decode(path.read_bytes(), "utf-8", path)
        found = _jsonl_keys(path, io.StringIO(text), None)
        loc = _Locator(path, "jsonl", encoding=codec)
    elif suffix in (".csv", ".tsv", ".txt"):
        source = _utf8_source(path, codec)
        found = _csv_header(path, source, separator, codec)
        loc = _Locator(path, "csv", header=True, separator=separator, encoding=codec)
    else:
        raise DataError(
            "cannot tell the side table's format from its suffix; expected .csv, .tsv, "
            ".parquet or .jsonl",
            path=path,
        )
    if key_column not in found and key in found:
        key_column = key
    hint = _separator_hint(found, separator) if loc.layout == "csv" else ""
    _require_columns(found, {key: key_column}, loc, hint=hint)
    try:
        if loc.layout == "parquet":
            frame = pl.read_parquet(path)
        elif loc.layout == "jsonl":
            frame = pl.read_ndjson(_as_polars_input(source), infer_schema_length=None)
        else:
            frame = pl.read_csv(
                _as_polars_input(source),
                separator=separator,
                infer_schema_length=10_000,
                schema_overrides={key_column: pl.String},
            )
    except pl.exceptions.PolarsError as exc:
        if loc.layout != "csv":
            raise _polars_failure(exc, path, codec, f"{loc.layout} side table") from exc
        # a column whose type changes late in the file: read every value as text
        frame = _read_csv_table(path, found, separator=separator, encoding=codec).frame
        frame = frame.drop(_ROW)
    frame = frame.with_row_index(_ROW)
    if loc.layout == "csv":
        blank = pl.all_horizontal(pl.exclude(_ROW).is_null())
        n_blank = frame.select(blank.sum()).item()
        report.add(f"skipped blank lines in {path.name}", n_blank)
        frame = frame.filter(~blank)
    if frame.height == 0:
        raise EmptyDataError("side table holds no rows", path=path)
    table = _Table(frame, loc)
    keys = _align_keys(frame[key_column], key_dtype, table, f"{key} (column {key_column!r})")
    frame = frame.drop(_ROW).with_columns(keys.alias(key_column))
    if key_column != key:
        frame = frame.drop(key, strict=False).rename({key_column: key})
    frame = frame.select(key, pl.exclude(key))
    return _dedupe_keys(frame, key, path.name, report)


# -- generic readers ------------------------------------------------------------------------------
def _generic_fields(mapping: ColumnMapping, found: Sequence[str]) -> dict[str, str | None]:
    """Canonical field -> source column; optional fields unset in the mapping use a column of
    the canonical name when the file has one."""
    fields: dict[str, str | None] = {
        "user_id": mapping.user_id,
        "item_id": mapping.item_id,
        "timestamp": mapping.timestamp,
    }
    for name in ("event_type", "value", "session_id"):
        column = getattr(mapping, name)
        if column is None and name in found:
            column = name
            logger.info("using column %r as %s (columns.%s is not set)", name, name, name)
        fields[name] = column
    return fields


def _read_generic(config: DataConfig, kind: Literal["csv", "parquet", "jsonl"]) -> EventLog:
    path = _single_file(_config_path(config), kind)
    mapping = config.columns
    report = RepairReport()
    if kind == "csv":
        if len(config.separator) != 1:
            raise ConfigError(f"separator must be one character, got {config.separator!r}")
        _check_not_empty(path)
        codec = _codec(config.encoding)
        found = _csv_header(path, _utf8_source(path, codec), config.separator, codec)
    elif kind == "parquet":
        found = _parquet_columns(path)
    else:
        found = _jsonl_columns(path, config.encoding)
    fields = _generic_fields(mapping, found)
    wanted = {k: v for k, v in fields.items() if v is not None}
    columns = list(wanted.values())
    if kind == "csv":
        table = _read_csv_table(
            path, columns, separator=config.separator, encoding=config.encoding, wanted=wanted
        )
    elif kind == "parquet":
        table = _read_parquet_table(path, columns, wanted=wanted)
    else:
        table = _read_jsonl_table(path, columns, encoding=config.encoding, wanted=wanted)
    events = _events_from_table(table, fields, mapping, report, skip_blank=kind == "csv")
    items = users = None
    if config.items_path is not None:
        items = _read_side_table(
            Path(config.items_path),
            mapping.item_id,
            "item_id",
            events["item_id"].dtype,
            config,
            report,
        )
        _count_missing(events, items, "item_id", Path(config.items_path).name, report)
    if config.users_path is not None:
        users = _read_side_table(
            Path(config.users_path),
            mapping.user_id,
            "user_id",
            events["user_id"].dtype,
            config,
            report,
        )
        _count_missing(events, users, "user_id", Path(config.users_path).name, report)
    return EventLog(
        events,
        items=items,
        users=users,
        source=str(path),
        has_timestamps=mapping.timestamp is not None,
        report=report,
    )


def _read_csv(config: DataConfig) -> EventLog:
    return _read_generic(config, "csv")


def _read_parquet(config: DataConfig) -> EventLog:
    return _read_generic(config, "parquet")


def _read_jsonl(config: DataConfig) -> EventLog:
    return _read_generic(config, "jsonl")


# -- MovieLens ------------------------------------------------------------------------------------
_RATING_MAPPING = ColumnMapping(
    user_id="user_id",
    item_id="item_id",
    timestamp="timestamp",
    value="rating",
    timestamp_unit="s",
    default_event_type=EventType.RATING,
)
_RATING_FIELDS: dict[str, str | None] = {
    "user_id": "user_id",
    "item_id": "item_id",
    "timestamp": "timestamp",
    "value": "rating",
}


def _int_column(table: _Table, column: str, label: str) -> pl.Series:
    """A required integer key column of a MovieLens file."""
    return _parse_ids(table.frame[column], table, label, rule="integer")


def _genre_list(column: str) -> pl.Expr:
    """``a|b|c`` -> ["a", "b", "c"]; empty and "(no genres listed)" -> []."""
    text = pl.col(column).fill_null("")
    return (
        pl.when(text.is_in(["", "(no genres listed)"]))
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(text.str.split("|"))
        .alias("genres")
    )


def _ml_events(table: _Table, report: RepairReport) -> pl.DataFrame:
    return _events_from_table(
        table, _RATING_FIELDS, _RATING_MAPPING, report, skip_blank=True, id_rule="integer"
    )


def _read_ml100k(config: DataConfig) -> EventLog:
    folder = _folder_of(_config_path(config))
    report = RepairReport()
    data = _need(folder, "u.data", "movielens-100k")
    table = _read_headerless(
        data, ["user_id", "item_id", "rating", "timestamp"], separator="\t", encoding="latin-1"
    )
    events = _ml_events(table, report)
    items = users = None
    if (folder / "u.item").is_file():
        genres = _ML100K_GENRES
        if (folder / "u.genre").is_file():
            genre_table = _read_headerless(
                folder / "u.genre", ["genre", "index"], separator="|", encoding="latin-1"
            ).frame.drop_nulls("genre")
            genres = tuple(genre_table.sort(pl.col("index").cast(pl.Int64))["genre"].to_list())
        flags = [f"g{i}" for i in range(len(genres))]
        names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags]
        item_table = _read_headerless(
            folder / "u.item", names, separator="|", encoding="latin-1", min_fields=5
        )
        genre_exprs = [
            pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, genres, strict=True)
        ]
        items = item_table.frame.select(
            _int_column(item_table, "item_id", "item id").alias("item_id"),
            pl.col("title"),
            pl.col("release_date").str.to_date("%d-%b-%Y", strict=False),
            pl.col("imdb_url"),
            pl.concat_list(genre_exprs).list.drop_nulls().alias("genres"),
        )
        items = _dedupe_keys(items, "item_id", "u.item", report)
        _count_missing(events, items, "item_id", "u.item", report)
    if (folder / "u.user").is_file():
        user_table = _read_headerless(
            folder / "u.user",
            ["user_id", "age", "gender", "occupation", "zip_code"],
            separator="|",
            encoding="latin-1",
        )
        users = user_table.frame.select(
            _int_column(user_table, "user_id", "user id").alias("user_id"),
            pl.col("gender"),
            pl.col("age").str.strip_chars().cast(pl.Int64, strict=False),
            pl.col("occupation"),
            pl.col("zip_code"),
        )
        users = _dedupe_keys(users, "user_id", "u.user", report)
        _count_missing(events, users, "user_id", "u.user", report)
    return EventLog(events, items=items, users=users, source=str(data), report=report)


def _ml1m_movies(path: Path) -> tuple[pl.DataFrame, _Table]:
    table = _read_headerless(
        path, ["item_id", "title", "genres"], separator="::", encoding="latin-1"
    )
    movies = table.frame.select(
        _int_column(table, "item_id", "movie id").alias("item_id"),
        pl.col("title"),
        _genre_list("genres"),
    )
    return movies, table


def _ml1m_users(path: Path) -> pl.DataFrame:
    table = _read_headerless(
        path,
        ["user_id", "gender", "age", "occupation", "zip_code"],
        separator="::",
        encoding="latin-1",
    )
    code = pl.col("occupation").str.strip_chars().cast(pl.Int64, strict=False)
    names = pl.Series(_ML1M_OCCUPATIONS)
    return table.frame.select(
        _int_column(table, "user_id", "user id").alias("user_id"),
        pl.col("gender"),
        pl.col("age").str.strip_chars().cast(pl.Int64, strict=False),
        code.replace_strict(
            list(range(len(names))), names.to_list(), default=pl.col("occupation")
        ).alias("occupation"),
        pl.col("zip_code"),
    )


def _read_ml1m(config: DataConfig) -> EventLog:
    folder = _folder_of(_config_path(config))
    ratings = folder / "ratings.dat"
    if not ratings.is_file():
        sequences = _sequence_candidates(folder)
        if sequences:
            raise DataError(
                f"no ratings.dat here, but the folder holds the sequence file {sequences[0].name} "
                "(the SASRec version of MovieLens 1M); read it with --format sequence-lines "
                "(data.format: sequence-lines)",
                path=folder,
            )
        _need(folder, "ratings.dat", "movielens-1m")
    report = RepairReport()
    table = _read_headerless(
        ratings, ["user_id", "item_id", "rating", "timestamp"], separator="::", encoding="latin-1"
    )
    events = _ml_events(table, report)
    items = users = None
    if (folder / "movies.dat").is_file():
        items, _ = _ml1m_movies(folder / "movies.dat")
        items = _dedupe_keys(items, "item_id", "movies.dat", report)
        _count_missing(events, items, "item_id", "movies.dat", report)
    if (folder / "users.dat").is_file():
        users = _dedupe_keys(_ml1m_users(folder / "users.dat"), "user_id", "users.dat", report)
        _count_missing(events, users, "user_id", "users.dat", report)
    return EventLog(events, items=items, users=users, source=str(ratings), report=report)


def _read_ml_latest(config: DataConfig) -> EventLog:
    folder = _folder_of(_config_path(config))
    report = RepairReport()
    ratings = _need(folder, "ratings.csv", "movielens-latest")
    wanted = {
        "user_id": "userId",
        "item_id": "movieId",
        "value": "rating",
        "timestamp": "timestamp",
    }
    table = _read_csv_table(
        ratings,
        list(wanted.values()),
        separator=",",
        encoding=config.encoding,
        wanted=wanted,
        setting=None,
    )
    mapping = _RATING_MAPPING.model_copy(update={"user_id": "userId", "item_id": "movieId"})
    events = _events_from_table(table, wanted, mapping, report, skip_blank=True, id_rule="integer")
    items = None
    movies_path = folder / "movies.csv"
    if movies_path.is_file():
        movie_cols = {"item_id": "movieId", "title": "title", "genres": "genres"}
        movies = _read_csv_table(
            movies_path,
            list(movie_cols.values()),
            separator=",",
            encoding=config.encoding,
            wanted=movie_cols,
            setting=None,
        )
        items = movies.frame.select(
            _int_column(movies, "movieId", "movie id (column 'movieId')").alias("item_id"),
            pl.col("title"),
            _genre_list("genres"),
        )
        items = _dedupe_keys(items, "item_id", "movies.csv", report)
        if (folder / "links.csv").is_file():
            items = _join_links(items, folder / "links.csv", config, report)
        if (folder / "tags.csv").is_file():
            items = _join_tags(items, folder / "tags.csv", config, report)
        _count_missing(events, items, "item_id", "movies.csv", report)
    return EventLog(events, items=items, source=str(ratings), report=report)


def _read_optional_csv(path: Path, cols: dict[str, str], config: DataConfig) -> _Table | None:
    """A comma-separated side file with the given columns, or None when it holds no rows."""
    try:
        return _read_csv_table(
            path,
            list(cols.values()),
            separator=",",
            encoding=config.encoding,
            wanted=cols,
            setting=None,
        )
    except EmptyDataError:
        return None


def _join_tags(
    items: pl.DataFrame, path: Path, config: DataConfig, report: RepairReport
) -> pl.DataFrame:
    """Add ``tags``: each movie's distinct tags in order of first use (empty list: none)."""
    table = _read_optional_csv(path, {"item_id": "movieId", "tag": "tag"}, config)
    if table is None:
        logger.info("%s holds no tags", path)
        return items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("tags"))
    tags = table.frame.select(
        _int_column(table, "movieId", "movie id (column 'movieId')").alias("item_id"),
        pl.col("tag").str.strip_chars(),
    ).filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
    logger.info("read %d tags from %s", tags.height, path.name)
    orphans = tags.filter(~pl.col("item_id").is_in(items["item_id"].implode())).height
    report.add(f"tags in {path.name} on movies missing from movies.csv (not kept)", orphans)
    per_item = tags.group_by("item_id", maintain_order=True).agg(
        pl.col("tag").unique(maintain_order=True).alias("tags")
    )
    return items.join(per_item, on="item_id", how="left", maintain_order="left").with_columns(
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )


def _join_links(
    items: pl.DataFrame, path: Path, config: DataConfig, report: RepairReport
) -> pl.DataFrame:
    """Add ``imdb_id``/``tmdb_id`` (strings: IMDb ids keep their leading zeros)."""
    cols = {"item_id": "movieId", "imdb_id": "imdbId", "tmdb_id": "tmdbId"}
    table = _read_optional_csv(path, cols, config)
    if table is None:
        return items
    links = table.frame.select(
        _int_column(table, "movieId", "movie id (column 'movieId')").alias("item_id"),
        pl.col("imdbId").alias("imdb_id"),
        pl.col("tmdbId").alias("tmdb_id"),
    )
    links = _dedupe_keys(links, "item_id", path.name, report)
    return items.join(links, on="item_id", how="left", maintain_order="left")


# -- sequence lines -------------------------------------------------------------------------------
def _sequence_candidates(folder: Path) -> list[Path]:
    """``.txt`` files of a folder that are not id maps or read-me files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() == ".txt"
        and "to_original" not in p.name
        and not p.name.lower().startswith(("readme", "license", "licence"))
    )


def _read_sequence_lines(config: DataConfig) -> EventLog:
    path = _config_path(config)
    if path.is_dir():
        candidates = _sequence_candidates(path)
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or _listing(path)
            raise DataError(
                f"format 'sequence-lines' needs a folder with exactly one .txt sequence file; "
                f"found {found}; point data.path at the file",
                path=path,
            )
        path = candidates[0]
    _check_not_empty(path)
    codec = _codec(config.encoding)
    text = _decode(path.read_bytes(), codec, path)
    report = RepairReport()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    frame = pl.DataFrame({"text": lines}, schema={"text": pl.String}).with_row_index(_ROW)
    frame = frame.with_columns(pl.col("text").str.replace_all(r"\s+", " ").str.strip_chars(" "))
    blank = frame["text"] == ""
    report.add(f"skipped blank lines in {path.name}", int(blank.sum()))
    frame = frame.filter(~blank)
    if frame.height == 0:
        raise EmptyDataError(
            "file holds only blank lines; expected 'user item item ...'", path=path
        )
    loc = _Locator(path, "lines", encoding=codec)
    tokens = frame.select(_ROW, pl.col("text").str.split(" ").alias("tokens"))
    lonely = tokens["tokens"].list.len() < 2
    if lonely.any():
        _raise_first(
            loc,
            tokens[_ROW],
            lonely,
            frame["text"],
            lambda v: (
                f"line holds only {v!r}; expected a user id followed by at least one item id, "
                "separated by spaces ('user item item ...')"
            ),
        )
    exploded = tokens.select(
        _ROW,
        pl.col("tokens").list.first().alias("user"),
        pl.col("tokens").list.slice(1).alias("item"),
    ).explode("item")
    table = _Table(exploded, loc)
    users = _parse_ids(exploded["user"], table, "user id", rule="majority")
    items = _parse_ids(exploded["item"], table, "item id", rule="majority")
    events = pl.DataFrame({"user_id": users, "item_id": items}).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("user_id").alias("timestamp")
    )
    events = canonical(events, default_event_type=EventType.INTERACTION)
    item_table, user_table = _sequence_side_tables(path.parent, events, report)
    return EventLog(
        events,
        items=item_table,
        users=user_table,
        source=str(path),
        has_timestamps=False,
        report=report,
    )


def _id_map(path: Path) -> pl.DataFrame:
    """``new_id original_id`` per line -> frame(new, original), both Int64."""
    table = _read_headerless(path, ["new", "original"], separator=" ", encoding="utf-8")
    return pl.DataFrame(
        {
            "new": _int_column(table, "new", "sequence id"),
            "original": _int_column(table, "original", "original id"),
        }
    )


def _sequence_side_tables(
    folder: Path, events: pl.DataFrame, report: RepairReport
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """ml-1m style side tables: ids mapped back to ``movies.dat`` / ``users.dat``."""
    items = users = None
    item_maps = sorted(folder.glob("*to_original_items*.txt"))
    if item_maps and (folder / "movies.dat").is_file():
        id_map = _dedupe_keys(_id_map(item_maps[0]), "new", item_maps[0].name, report)
        movies, _ = _ml1m_movies(folder / "movies.dat")
        movies = movies.unique("item_id", keep="first", maintain_order=True)
        items = id_map.join(
            movies.rename({"item_id": "original"}), on="original", how="left", maintain_order="left"
        ).rename({"new": "item_id", "original": "original_id"})
        report.add(
            f"items of {item_maps[0].name} missing from movies.dat (no title)",
            items["title"].null_count(),
        )
        items = items.with_columns(pl.col("item_id").cast(events["item_id"].dtype))
        _count_missing(events, items, "item_id", item_maps[0].name, report)
    user_maps = sorted(folder.glob("*to_original_users*.txt"))
    if user_maps and (folder / "users.dat").is_file():
        id_map = _dedupe_keys(_id_map(user_maps[0]), "new", user_maps[0].name, report)
        people = _ml1m_users(folder / "users.dat").unique(
            "user_id", keep="first", maintain_order=True
        )
        users = id_map.join(
            people.rename({"user_id": "original"}), on="original", how="left", maintain_order="left"
        ).rename({"new": "user_id", "original": "original_id"})
        report.add(
            f"users of {user_maps[0].name} missing from users.dat (no demographics)",
            users["gender"].null_count(),
        )
        users = users.with_columns(pl.col("user_id").cast(events["user_id"].dtype))
        _count_missing(events, users, "user_id", user_maps[0].name, report)
    return items, users


_READERS: dict[str, Callable[[DataConfig], EventLog]] = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "jsonl": _read_jsonl,
    "movielens-100k": _read_ml100k,
    "movielens-1m": _read_ml1m,
    "movielens-latest": _read_ml_latest,
    "sequence-lines": _read_sequence_lines,
}
