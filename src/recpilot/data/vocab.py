"""External id ⇄ contiguous index mapping. Only a vocabulary converts ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recpilot.errors import ArtifactError, UnknownIdError
from recpilot.types import UNKNOWN, IntArray


class Vocabulary:
    """An ordered set of external ids; the position of an id is its index.

    Args:
        ids: unique external ids (ints or strings), in index order.
        name: what the ids are ("user", "item"), used in error messages.

    Raises:
        ValueError: if ``ids`` holds duplicates or nulls.
    """

    def __init__(self, ids: pl.Series | Sequence[Any] | np.ndarray, name: str = "item") -> None:
        series = (
            ids
            if isinstance(ids, pl.Series)
            else pl.Series(values=list(ids) if not isinstance(ids, np.ndarray) else ids)
        )
        series = series.alias("id")
        if series.null_count():
            raise ValueError(f"{name} vocabulary: ids must not be null")
        if series.n_unique() != len(series):
            dup = series.filter(series.is_duplicated()).head(3).to_list()
            raise ValueError(f"{name} vocabulary: ids must be unique, got duplicates such as {dup}")
        self.name = name
        self._ids = series
        self._lookup: dict[Any, int] | None = None
        self._list: list[Any] | None = None  # the ids as Python objects (reverse lookups)
        # how an external id is coerced to this vocabulary's type (decided once: a polars
        # dtype comparison per lookup would cost more than the lookup)
        dtype = series.dtype
        self._kind = "str" if dtype == pl.String else "int" if dtype.is_integer() else "any"

    @classmethod
    def from_values(cls, values: pl.Series, name: str = "item") -> Vocabulary:
        """Build a vocabulary of the distinct values in order of first appearance."""
        return cls(values.drop_nulls().unique(maintain_order=True), name=name)

    # -- basic protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._dict()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids.equals(other._ids)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return id(self)

    def __repr__(self) -> str:
        return f"Vocabulary(name={self.name!r}, size={len(self)}, dtype={self._ids.dtype})"

    @property
    def ids(self) -> pl.Series:
        """The external ids in index order."""
        return self._ids

    @property
    def dtype(self) -> pl.DataType:
        return self._ids.dtype

    def _dict(self) -> dict[Any, int]:
        if self._lookup is None:
            self._lookup = {v: i for i, v in enumerate(self._pylist())}
        return self._lookup

    def _pylist(self) -> list[Any]:
        if self._list is None:
            self._list = self._ids.to_list()
        return self._list

    # -- conversion ------------------------------------------------------------------------------
    def index_of(self, external_id: Any) -> int:
        """Index of one id; raises `UnknownIdError` when absent."""
        try:
            return self._dict()[self._coerce(external_id)]
        except (KeyError, ValueError, TypeError):
            raise UnknownIdError(
                f"unknown {self.name} id {external_id!r}: it is not among the {len(self)} "
                f"{self.name}s of this vocabulary"
            ) from None

    def get(self, external_id: Any, default: int = UNKNOWN) -> int:
        """Index of one id, or ``default`` when absent."""
        try:
            return self._dict().get(self._coerce(external_id), default)
        except (ValueError, TypeError):
            return default

    def get_many(self, external_ids: Iterable[Any], default: int = UNKNOWN) -> list[int]:
        """Indices of a few ids (``default`` for absent ones) by dictionary lookups; for many
        ids at once `index` (a polars join) is faster."""
        lookup = self._dict()
        if self._kind == "str":
            return [lookup.get(str(x), default) for x in external_ids]
        if self._kind == "int":
            out = []
            for x in external_ids:
                try:
                    out.append(lookup.get(int(x) if isinstance(x, str) else x, default))
                except (ValueError, TypeError):
                    out.append(default)
            return out
        return [self.get(x, default) for x in external_ids]

    def _coerce(self, external_id: Any) -> Any:
        if self._kind == "str":
            return str(external_id)
        if self._kind == "int" and isinstance(external_id, str):
            return int(external_id)
        return external_id

    def index(
        self,
        ids: pl.Series | Iterable[Any],
        missing: Literal["error", "unknown"] = "error",
    ) -> IntArray:
        """Indices of many ids at once (vectorised through a polars join).

        Args:
            ids: external ids.
            missing: ``"error"`` raises `UnknownIdError` naming the first unknown id;
                ``"unknown"`` maps them to -1.

        Returns:
            ``(n,)`` int64 indices.
        """
        series = ids if isinstance(ids, pl.Series) else pl.Series(values=list(ids))
        if len(series) == 0:
            return np.empty(0, dtype=np.int64)
        try:
            series = series.cast(self._ids.dtype, strict=True)
        except Exception:
            if missing == "error":
                raise UnknownIdError(
                    f"{self.name} ids of type {series.dtype} cannot match this vocabulary "
                    f"of {self._ids.dtype} ids"
                ) from None
            return np.full(len(series), UNKNOWN, dtype=np.int64)
        table = pl.DataFrame({"id": self._ids, "idx": pl.int_range(len(self._ids), eager=True)})
        joined = pl.DataFrame({"id": series}).join(
            table, on="id", how="left", maintain_order="left"
        )
        idx = joined["idx"]
        if idx.null_count():
            if missing == "error":
                first = joined.filter(pl.col("idx").is_null())["id"][0]
                raise UnknownIdError(
                    f"unknown {self.name} id {first!r} ({idx.null_count()} unknown in all)"
                )
            idx = idx.fill_null(UNKNOWN)
        return idx.to_numpy().astype(np.int64, copy=False)

    def lookup(self, indices: Sequence[int] | np.ndarray) -> list[Any]:
        """External ids of indices (each in ``[0, len)``)."""
        arr = np.asarray(indices, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise IndexError(
                f"{self.name} index out of range [0, {len(self)}): {arr.min()}..{arr.max()}"
            )
        if arr.size <= 1000:  # a few (a recommendation list): Python list indexing
            ids = self._pylist()
            return [ids[i] for i in arr.tolist()]
        return self._ids.gather(arr).to_list()

    def extend(self, ids: pl.Series | Iterable[Any]) -> Vocabulary:
        """A new vocabulary with the unseen ``ids`` appended (existing indices unchanged)."""
        series = ids if isinstance(ids, pl.Series) else pl.Series(values=list(ids))
        series = series.cast(self._ids.dtype).unique(maintain_order=True)
        new = series.filter(~series.is_in(self._ids.implode()))
        return Vocabulary(pl.concat([self._ids, new.alias("id")]), name=self.name)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the ids as a one-column Parquet file."""
        pl.DataFrame({"id": self._ids}).write_parquet(path)

    @classmethod
    def load(cls, path: str | Path, name: str = "item") -> Vocabulary:
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise ArtifactError(f"cannot read {name} vocabulary {path}: {exc}") from exc
        return cls(frame["id"], name=name)
