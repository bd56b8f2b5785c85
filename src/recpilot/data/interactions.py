"""`Interactions`: the immutable, index-encoded event table every model trains on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from recpilot.data.vocab import Vocabulary
from recpilot.types import FloatArray, IntArray


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Interactions:
    """Events encoded as indices, sorted by user, then time (ties keep log order).

    All arrays have shape ``(N,)`` and are read-only. ``users``/``items`` are the vocabularies
    that map external ids to the indices used here; ``event_types`` names the codes of
    ``event_type``. ``item_table``/``user_table`` are optional side tables keyed by
    ``item_id``/``user_id`` (titles, genres, attributes).
    """

    user_idx: IntArray
    item_idx: IntArray
    timestamp: IntArray
    event_type: IntArray
    value: FloatArray
    weight: FloatArray
    users: Vocabulary
    items: Vocabulary
    event_types: tuple[str, ...] = ("interaction",)
    item_table: pl.DataFrame | None = field(default=None, repr=False)
    user_table: pl.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        for name in ("item_idx", "timestamp", "event_type", "value", "weight"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Interactions.{name} has {len(getattr(self, name))} rows, expected {n}"
                )
        for name, dtype in (
            ("user_idx", np.int64),
            ("item_idx", np.int64),
            ("timestamp", np.int64),
            ("event_type", np.int64),
            ("value", np.float32),
            ("weight", np.float32),
        ):
            object.__setattr__(self, name, _frozen(np.asarray(getattr(self, name), dtype=dtype)))
        if n:
            if self.user_idx.min() < 0 or self.user_idx.max() >= len(self.users):
                raise ValueError("user_idx out of the user vocabulary's range")
            if self.item_idx.min() < 0 or self.item_idx.max() >= len(self.items):
                raise ValueError("item_idx out of the item vocabulary's range")
            order_ok = np.all(
                (np.diff(self.user_idx) > 0)
                | ((np.diff(self.user_idx) == 0) & (np.diff(self.timestamp) >= 0))
            )
            if not order_ok:
                raise ValueError("Interactions must be sorted by user_idx, then timestamp")

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        events: pl.DataFrame,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        event_types: Sequence[str] | None = None,
        item_table: pl.DataFrame | None = None,
        user_table: pl.DataFrame | None = None,
    ) -> Interactions:
        """Encode a canonical event frame (see `recpilot.data.schema`).

        Rows whose ids are not in given vocabularies are dropped (callers count them first when
        that matters). Vocabularies built here hold the sorted distinct ids.
        """
        if users is None:
            users = Vocabulary(events["user_id"].unique().sort(), name="user")
        if items is None:
            items = Vocabulary(events["item_id"].unique().sort(), name="item")
        if event_types is None:
            event_types = (
                tuple(sorted(events["event_type"].unique().to_list()))
                if "event_type" in events.columns
                else ("interaction",)
            )
        u = users.index(events["user_id"], missing="unknown")
        i = items.index(events["item_id"], missing="unknown")
        keep = (u >= 0) & (i >= 0)
        n = len(events)
        ts = (
            events["timestamp"].to_numpy().astype(np.int64)
            if "timestamp" in events.columns
            else np.arange(n, dtype=np.int64)
        )
        if "event_type" in events.columns:
            et_map = {name: code for code, name in enumerate(event_types)}
            et = (
                events["event_type"]
                .replace_strict(et_map, default=-1, return_dtype=pl.Int64)
                .to_numpy()
            )
            keep &= et >= 0
        else:
            et = np.zeros(n, dtype=np.int64)
        value = (
            events["value"].cast(pl.Float32).fill_null(float("nan")).to_numpy()
            if "value" in events.columns
            else np.full(n, np.nan, dtype=np.float32)
        )
        weight = (
            events["weight"].cast(pl.Float32).to_numpy()
            if "weight" in events.columns
            else np.ones(n, dtype=np.float32)
        )
        rows = np.flatnonzero(keep)
        rows = rows[np.lexsort((ts[rows], u[rows]))]  # stable: ties keep log order
        return cls(
            user_idx=u[rows],
            item_idx=i[rows],
            timestamp=ts[rows],
            event_type=et[rows],
            value=value[rows],
            weight=weight[rows],
            users=users,
            items=items,
            event_types=tuple(event_types),
            item_table=item_table,
            user_table=user_table,
        )

    def to_frame(self) -> pl.DataFrame:
        """Back to a canonical event frame with external ids (plus ``weight``)."""
        return pl.DataFrame(
            {
                "user_id": self.users.ids.gather(self.user_idx),
                "item_id": self.items.ids.gather(self.item_idx),
                "timestamp": self.timestamp,
                "event_type": pl.Series(self.event_types).gather(self.event_type)
                if len(self)
                else pl.Series([], dtype=pl.String),
                "value": pl.Series(self.value).fill_nan(None),
                "weight": self.weight,
            }
        )

    def with_rows(self, mask_or_index: np.ndarray) -> Interactions:
        """A new table with a subset of rows (same vocabularies; order preserved)."""
        sel = np.asarray(mask_or_index)
        return Interactions(
            user_idx=self.user_idx[sel],
            item_idx=self.item_idx[sel],
            timestamp=self.timestamp[sel],
            event_type=self.event_type[sel],
            value=self.value[sel],
            weight=self.weight[sel],
            users=self.users,
            items=self.items,
            event_types=self.event_types,
            item_table=self.item_table,
            user_table=self.user_table,
        )

    # -- shape -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_events(self) -> int:
        return len(self.user_idx)

    def __repr__(self) -> str:
        return f"Interactions(n_users={self.n_users}, n_items={self.n_items}, n_events={self.n_events})"

    # -- derived views ---------------------------------------------------------------------------
    @cached_property
    def user_ptr(self) -> IntArray:
        """``(n_users + 1,)`` offsets: user ``u``'s events are rows ``ptr[u]:ptr[u+1]``."""
        counts = np.bincount(self.user_idx, minlength=self.n_users)
        ptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return _frozen(ptr)

    def history(self, user: int) -> IntArray:
        """Item indices of one user's events in time order."""
        ptr = self.user_ptr
        return self.item_idx[ptr[user] : ptr[user + 1]]

    def histories(self, users: Sequence[int] | np.ndarray) -> list[IntArray]:
        """Item indices of many users' events, each in time order."""
        ptr = self.user_ptr
        return [self.item_idx[ptr[u] : ptr[u + 1]] for u in np.asarray(users, dtype=np.int64)]

    def user_lengths(self) -> IntArray:
        return np.diff(self.user_ptr)

    def to_csr(self, weighted: bool = False) -> sp.csr_matrix:
        """``(n_users, n_items)`` matrix; 1 per observed pair, or the max weight if ``weighted``."""
        data = self.weight if weighted else np.ones(len(self), dtype=np.float32)
        mat = sp.csr_matrix(
            (data, (self.user_idx, self.item_idx)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        mat.sum_duplicates()
        if len(self) and mat.nnz != len(self):
            # duplicates were summed: use max (weighted) or 1 (binary) per pair instead
            coo = sp.coo_matrix((data, (self.user_idx, self.item_idx)), shape=mat.shape)
            key = coo.row.astype(np.int64) * self.n_items + coo.col
            order = np.lexsort((-coo.data, key))
            first = np.ones(len(order), dtype=bool)
            first[1:] = key[order][1:] != key[order][:-1]
            sel = order[first]
            mat = sp.csr_matrix(
                (coo.data[sel], (coo.row[sel], coo.col[sel])), shape=mat.shape, dtype=np.float32
            )
        mat.sort_indices()
        return mat

    def item_counts(self) -> IntArray:
        """Events per item, ``(n_items,)``."""
        return np.bincount(self.item_idx, minlength=self.n_items).astype(np.int64)

    def describe(self) -> dict[str, Any]:
        lengths = self.user_lengths()
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_events": self.n_events,
            "density": self.n_events / max(1, self.n_users * self.n_items),
            "mean_history": float(lengths.mean()) if len(lengths) else 0.0,
            "event_types": list(self.event_types),
        }
