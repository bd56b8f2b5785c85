"""Engineered features of (user, item, time) examples, computed only from the past.

Every feature of an example at time ``t`` reads events strictly before ``t``:

- **user** (from the example's history): events and exposures so far, positives and the
  smoothed positive rate per behaviour, the mean rating (rating labels), time since the last
  event and since the first;
- **item** (from every user's events before ``t``): popularity, exposures, positives and the
  smoothed rate per behaviour, mean rating, age;
- **cross**: category affinity (the user's category mix · the item's categories), how often
  the user already saw / acted on this item, and item-item co-occurrence (cosine over the
  training period, the example's own user left out) between the candidate and the last items
  and the last positive item of the user;
- **side**: numeric user/item side columns (age, price) and categorical codes (gender,
  occupation, segment, category).

Training computes item statistics *as of* each example's time; a fitted `FeatureEncoder`
keeps a snapshot of them (all events it saw) to serve new requests, and reads user
features from the history given with the request, through the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from recpilot.behaviour.dataset import (
    TRAIN,
    BehaviourDataset,
    EventTable,
    LabelMode,
    SideFeatures,
)
from recpilot.data.vocab import Vocabulary
from recpilot.errors import ArtifactError, NotFittedError
from recpilot.types import IntArray

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Pseudo-count of the smoothed rates: ``(positives + m * global) / (exposures + m)``.
SMOOTHING = 5.0
#: How many of the last history items the co-occurrence features read.
LAST_ITEMS = 5
#: How many of the most recent history events the recent category affinity reads.
RECENT = 10
#: Dimensions of the item factors behind the latent affinity features.
FACTORS = 16
_TS_BITS = 42


@dataclass
class FeatureBatch:
    """Model inputs for ``N`` examples.

    Attributes:
        numeric: ``(N, F)`` float32 engineered features (not standardised).
        numeric_names: the ``F`` names.
        categorical: ``(N, K)`` int64 codes, 0 = unknown.
        categorical_names: the ``K`` names; ``cardinalities`` their code counts.
        item: ``(N,)`` candidate item indices.
        hist_item: ``(N, L)`` the last ``L`` history items, oldest first, right-padded with -1.
        hist_token: ``(N, L)`` their token codes (-1 padding).
        hist_gap_s: ``(N, L)`` seconds between each history event and the example.
    """

    numeric: F32
    numeric_names: list[str]
    categorical: IntArray
    categorical_names: list[str]
    cardinalities: list[int]
    item: IntArray
    hist_item: IntArray
    hist_token: IntArray
    hist_gap_s: F64

    def __len__(self) -> int:
        return len(self.item)


class ItemStats(Protocol):
    """Item statistics at given times: counts of events, exposures, positives, values."""

    def at(self, items: IntArray, timestamps: IntArray) -> dict[str, np.ndarray]: ...


@dataclass
class SnapshotItemStats:
    """Item statistics frozen at the end of the data seen (serving)."""

    n: F64
    exposures: F64
    positives: F64  # (I, B)
    value_sum: F64
    value_n: F64
    first_ts: F64  # NaN when the item has no event

    def at(self, items: IntArray, timestamps: IntArray) -> dict[str, np.ndarray]:
        return {
            "n": self.n[items],
            "exposures": self.exposures[items],
            "positives": self.positives[items],
            "value_sum": self.value_sum[items],
            "value_n": self.value_n[items],
            "first_ts": self.first_ts[items],
        }


class AsOfItemStats:
    """Item statistics from the events strictly before each query time (training).

    Args:
        events: the histories.
        n_items: catalogue size.
    """

    def __init__(self, events: EventTable, n_items: int) -> None:
        order = np.lexsort((events.timestamp, events.item))
        self.t0 = int(events.timestamp.min()) if len(events.timestamp) else 0
        self.keys = (events.item[order] << _TS_BITS) + (events.timestamp[order] - self.t0)
        self.start = np.searchsorted(events.item[order], np.arange(n_items + 1))
        ts = events.timestamp[order]
        self.first_ts = np.full(n_items, np.nan)
        has = self.start[1:] > self.start[:-1]
        self.first_ts[has] = ts[self.start[:-1][has]]

        def cum(x: np.ndarray) -> np.ndarray:
            z = np.zeros((1, *x.shape[1:]), dtype=np.float64)
            return np.concatenate([z, np.cumsum(x, axis=0, dtype=np.float64)])

        val = events.value[order]
        expo = events.exposure[order]
        with_value = expo & ~np.isnan(val)
        self.cs_exposure = cum(expo)
        self.cs_positive = cum(events.positive[order])
        self.cs_value = cum(np.where(with_value, val, 0.0))
        self.cs_value_n = cum(with_value)

    def at(self, items: IntArray, timestamps: IntArray) -> dict[str, np.ndarray]:
        query = (items << _TS_BITS) + (np.asarray(timestamps, dtype=np.int64) - self.t0)
        end = np.searchsorted(self.keys, query, side="left")
        start = self.start[items]
        return {
            "n": (end - start).astype(np.float64),
            "exposures": self.cs_exposure[end] - self.cs_exposure[start],
            "positives": self.cs_positive[end] - self.cs_positive[start],
            "value_sum": self.cs_value[end] - self.cs_value[start],
            "value_n": self.cs_value_n[end] - self.cs_value_n[start],
            "first_ts": np.where(end > start, self.first_ts[items], np.nan),
        }

    def snapshot(self) -> SnapshotItemStats:
        """The statistics after every event."""
        end, start = self.start[1:], self.start[:-1]
        return SnapshotItemStats(
            n=(end - start).astype(np.float64),
            exposures=self.cs_exposure[end] - self.cs_exposure[start],
            positives=self.cs_positive[end] - self.cs_positive[start],
            value_sum=self.cs_value[end] - self.cs_value[start],
            value_n=self.cs_value_n[end] - self.cs_value_n[start],
            first_ts=self.first_ts.copy(),
        )


def _cooccurrence(events: EventTable, cutoff: int, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user × item matrix of the events before ``cutoff`` (the training period)."""
    keep = events.timestamp < cutoff
    x = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (events.user[keep], events.item[keep])),
        shape=(n_users, n_items),
    )
    x.data[:] = 1.0  # duplicates were summed
    x.sum_duplicates()
    x.data = np.minimum(x.data, 1.0)
    return x


def _item_factors(x: sp.csr_matrix, k: int) -> F32:
    """Item latent vectors ``(I, k)`` from a truncated SVD of the column-normalised user ×
    item matrix of the training period (items co-viewed by the same users point alike)."""
    n_users, n_items = x.shape
    k = min(k, n_users - 1, n_items - 1)
    if k < 1 or x.nnz == 0:
        return np.zeros((n_items, 1), dtype=np.float32)
    from scipy.sparse.linalg import svds

    degree = np.asarray(x.sum(axis=0)).ravel()
    scaled = x @ sp.diags(1.0 / np.sqrt(np.maximum(degree, 1.0)))
    _, sv, vt = svds(scaled.astype(np.float64), k=k, random_state=0)
    return np.asarray(vt.T * np.sqrt(sv)[None, :], dtype=np.float32)


def _transitions(events: EventTable, cutoff: int, n_items: int) -> sp.csr_matrix:
    """Counts of (last positive item → next exposed item) within users, training period."""
    n = len(events.item)
    idx = np.where(events.positive[:, 0], np.arange(n), -1)
    last_pos = np.maximum.accumulate(idx) if n else idx
    prev = np.r_[-1, last_pos[:-1]] if n else idx
    ok = (
        events.exposure
        & (events.timestamp < cutoff)
        & (prev >= events.user_start[events.user])
        & (events.item >= 0)
    )
    ok &= events.item[np.maximum(prev, 0)] >= 0
    t = sp.csr_matrix(
        (np.ones(int(ok.sum()), dtype=np.float32), (events.item[prev[ok]], events.item[ok])),
        shape=(n_items, n_items),
    )
    t.sum_duplicates()
    return t


def _pair_values(m: sp.csr_matrix, rows: IntArray, cols: IntArray) -> F64:
    """``m[rows[k], cols[k]]`` for every k (0 where absent or an index is -1)."""
    out = np.zeros(len(rows), dtype=np.float64)
    ok = (rows >= 0) & (cols >= 0) & (rows < m.shape[0]) & (cols < m.shape[1])
    if ok.any():
        out[ok] = np.asarray(m[rows[ok], cols[ok]]).ravel()
    return out


class FeatureEncoder:
    """Turns examples (or a served user's history and candidates) into a `FeatureBatch`.

    Args:
        history_length: how many of the most recent history events go into the batch.

    `fit` reads a `BehaviourDataset`: global rates, side features, the co-occurrence of the
    training period and the item statistics snapshot used for serving.
    """

    def __init__(self, history_length: int = 50) -> None:
        self.history_length = history_length
        self.numeric_range_: tuple[np.ndarray, np.ndarray] | None = None

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, data: BehaviourDataset) -> FeatureEncoder:
        """Learn what features need from the training period (and the serving snapshot)."""
        train = data.split == TRAIN
        self.mode_: LabelMode = data.mode
        self.behaviours_ = list(data.behaviours)
        self.tokens_ = list(data.tokens)
        self.rating_threshold_ = data.rating_threshold
        self.users_ = data.users
        self.items_ = data.items
        self.user_side_ = data.user_side
        self.item_side_ = data.item_side
        self.sampling_rate_ = dict(data.sampling_rate)
        self.global_rate_ = (
            data.labels[train].mean(axis=0).astype(np.float64)
            if train.any()
            else np.full(len(self.behaviours_), 0.5)
        )
        ev = data.events
        with_value = ev.exposure & ~np.isnan(ev.value) & (ev.timestamp < data.cutoffs[0])
        self.global_value_ = float(ev.value[with_value].mean()) if with_value.any() else 0.0
        self.x_train_ = _cooccurrence(ev, data.cutoffs[0], len(data.users), len(data.items))
        self.trans_ = _transitions(ev, data.cutoffs[0], len(data.items))
        self.item_factors_ = _item_factors(self.x_train_, FACTORS)
        self._set_cooc()
        self.snapshot_ = AsOfItemStats(ev, len(data.items)).snapshot()
        side_means: dict[str, float] = {}
        for prefix, side in (("user", data.user_side), ("item", data.item_side)):
            for name, x in side.numeric.items():
                finite = x[np.isfinite(x)]
                side_means[f"{prefix}_{name}"] = float(finite.mean()) if len(finite) else 0.0
        self.side_means_ = side_means
        return self

    def set_range(self, batch: FeatureBatch) -> None:
        """Clip numeric features to the range they have in ``batch`` (the training rows)
        from now on."""
        if len(batch):
            self.numeric_range_ = (batch.numeric.min(axis=0), batch.numeric.max(axis=0))

    def _set_cooc(self) -> None:
        x = self.x_train_
        self.cooc_ = (x.T @ x).tocsr()  # (I, I) users who had both
        self.item_degree_ = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
        self.trans_out_ = np.asarray(self.trans_.sum(axis=1)).ravel().astype(np.float64)

    def _check(self) -> None:
        if not hasattr(self, "cooc_"):
            raise NotFittedError("this FeatureEncoder is not fitted: call fit(dataset) first")

    # -- names -----------------------------------------------------------------------------------
    @property
    def numeric_names(self) -> list[str]:
        self._check()
        names = ["u_log_n", "u_log_exposures", "u_has_history", "u_log_since_last_s"]
        names += ["u_log_active_s"]
        for b in self.behaviours_:
            names += [f"u_rate_{b}", f"u_log_pos_{b}"]
        if self.mode_ == "rating":
            names += ["u_mean_value"]
        names += ["i_log_n", "i_log_exposures", "i_has_events", "i_log_age_s"]
        for b in self.behaviours_:
            names += [f"i_rate_{b}", f"i_log_pos_{b}"]
        if self.mode_ == "rating":
            names += ["i_mean_value"]
        if self.item_side_.categories is not None:
            names += ["category_affinity", "category_affinity_recent"]
        names += ["latent_affinity", "latent_affinity_recent"]
        names += ["cand_log_seen", "cand_since_seen_s"]
        names += [f"cand_pos_{b}" for b in self.behaviours_]
        names += ["cooc_max", "cooc_mean", "cooc_last", "cooc_last_positive"]
        names += ["transition_rate", "transition_log_count"]
        names += [f"user_{n}" for n in self.user_side_.numeric]
        names += [f"item_{n}" for n in self.item_side_.numeric]
        return names

    @property
    def categorical_names(self) -> list[str]:
        self._check()
        return [f"user_{n}" for n in self.user_side_.categorical] + [
            f"item_{n}" for n in self.item_side_.categorical
        ]

    @property
    def cardinalities(self) -> list[int]:
        self._check()
        return list(self.user_side_.cardinality.values()) + list(
            self.item_side_.cardinality.values()
        )

    # -- transforming ----------------------------------------------------------------------------
    def transform(self, data: BehaviourDataset, rows: IntArray | None = None) -> FeatureBatch:
        """Features of the dataset's examples ``rows`` (all by default), item statistics as of
        each example's time."""
        self._check()
        idx = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
        stats = AsOfItemStats(data.events, len(data.items))
        return self._features(
            data.events,
            stats,
            user=data.user[idx],
            item=data.item[idx],
            timestamp=data.timestamp[idx],
            hist_end=data.hist_end[idx],
            in_train=data.split[idx] == TRAIN,
            own_event=(data.split[idx] == TRAIN)
            & ((data.mode != "sampled") | (data.labels[idx, 0] == 1)),
        )

    def history_table(
        self,
        items: IntArray,
        event_types: list[str],
        values: F64,
        timestamps: IntArray,
    ) -> EventTable:
        """One user's history (oldest first) as an `EventTable` (user index 0)."""
        self._check()
        n = len(items)
        types = np.asarray(event_types, dtype=object)
        tok_str = [
            f"rating:{round(float(v) * 2) / 2}" if t == "rating" and np.isfinite(v) else str(t)
            for t, v in zip(types, values, strict=True)
        ]
        code = {t: j for j, t in enumerate(self.tokens_)}
        token = np.array([code.get(t, -1) for t in tok_str], dtype=np.int64)
        if self.mode_ == "rating":
            exposure = (types == "rating") & np.isfinite(values)
            assert self.rating_threshold_ is not None
            positive = (exposure & (np.nan_to_num(values, nan=-np.inf) >= self.rating_threshold_))[
                :, None
            ]
        elif self.mode_ == "impressions":
            outcome = set(self.behaviours_)
            exposure = np.array([t not in outcome for t in types], dtype=bool) & np.isin(
                types, ["view", "impression"]
            )
            positive = np.stack([types == b for b in self.behaviours_], axis=1).reshape(
                n, len(self.behaviours_)
            )
        else:
            exposure = np.ones(n, dtype=bool)
            positive = exposure[:, None].copy()
        order = np.argsort(np.asarray(timestamps, dtype=np.int64), kind="stable")
        return EventTable(
            user=np.zeros(n, dtype=np.int64),
            item=np.asarray(items, dtype=np.int64)[order],
            timestamp=np.asarray(timestamps, dtype=np.int64)[order],
            token=token[order],
            positive=positive[order].astype(bool),
            exposure=exposure[order].astype(bool),
            value=np.asarray(values, dtype=np.float64)[order],
            user_start=np.array([0, n], dtype=np.int64),
        )

    def transform_history(
        self, history: EventTable, user: int, items: IntArray, timestamp: int
    ) -> FeatureBatch:
        """Features of candidates for one served user (item statistics: the snapshot).

        Args:
            history: from `history_table` (events the model's vocabulary does not know carry
                item -1).
            user: the user's index in the training vocabulary, or -1 (side features unknown).
            items: ``(n,)`` candidate item indices.
            timestamp: the request time (ms).
        """
        self._check()
        n = len(items)
        batch = self._features(
            history,
            self.snapshot_,
            user=np.zeros(n, dtype=np.int64),
            item=np.asarray(items, dtype=np.int64),
            timestamp=np.full(n, timestamp, dtype=np.int64),
            hist_end=np.full(n, len(history.item), dtype=np.int64),
            in_train=np.zeros(n, dtype=bool),
            own_event=np.zeros(n, dtype=bool),
            side_user=np.full(n, user, dtype=np.int64),
        )
        return batch

    def _features(
        self,
        ev: EventTable,
        stats: ItemStats,
        *,
        user: IntArray,
        item: IntArray,
        timestamp: IntArray,
        hist_end: IntArray,
        in_train: npt.NDArray[np.bool_],
        own_event: npt.NDArray[np.bool_],
        side_user: IntArray | None = None,
    ) -> FeatureBatch:
        n = len(user)
        n_b = len(self.behaviours_)
        if (
            len(ev.item) == 0
        ):  # no history at all: one unreachable dummy event keeps indexing simple
            ev = EventTable(
                user=np.array([-1], dtype=np.int64),
                item=np.array([-1], dtype=np.int64),
                timestamp=np.array([0], dtype=np.int64),
                token=np.array([-1], dtype=np.int64),
                positive=np.zeros((1, n_b), dtype=bool),
                exposure=np.zeros(1, dtype=bool),
                value=np.array([np.nan]),
                user_start=ev.user_start,
            )
        start = ev.user_start[user]
        end = hist_end
        length = end - start
        has = length > 0
        ts_s = timestamp.astype(np.float64) / 1000.0
        cols: list[np.ndarray] = []

        def cum(x: np.ndarray) -> np.ndarray:
            z = np.zeros((1, *x.shape[1:]), dtype=np.float64)
            return np.concatenate([z, np.cumsum(x, axis=0, dtype=np.float64)])

        valid_item = ev.item >= 0
        cs_exp = cum(ev.exposure)
        cs_pos = cum(ev.positive)
        with_value = ev.exposure & ~np.isnan(ev.value)
        u_exp = cs_exp[end] - cs_exp[start]
        u_pos = cs_pos[end] - cs_pos[start]  # (N, B)
        last = np.maximum(end - 1, 0)
        first_ts = np.where(has, ev.timestamp[np.minimum(start, len(ev.timestamp) - 1)], 0)
        last_ts = np.where(has, ev.timestamp[last] if len(ev.timestamp) else 0, 0)
        cols += [np.log1p(length), np.log1p(u_exp), has.astype(np.float64)]
        cols += [np.where(has, np.log1p(np.maximum(ts_s - last_ts / 1000.0, 0)), 0.0)]
        cols += [np.where(has, np.log1p(np.maximum(ts_s - first_ts / 1000.0, 0)), 0.0)]
        g = self.global_rate_
        for j in range(n_b):
            cols += [(u_pos[:, j] + SMOOTHING * g[j]) / (u_exp + SMOOTHING), np.log1p(u_pos[:, j])]
        if self.mode_ == "rating":
            cs_v = cum(np.where(with_value, ev.value, 0.0))
            cs_vn = cum(with_value)
            v_sum, v_n = cs_v[end] - cs_v[start], cs_vn[end] - cs_vn[start]
            cols += [(v_sum + SMOOTHING * self.global_value_) / (v_n + SMOOTHING)]

        known = item >= 0
        safe_item = np.where(known, item, 0)
        ist = stats.at(safe_item, timestamp)
        for key in ist:
            ist[key] = np.where(known.reshape(-1, *([1] * (ist[key].ndim - 1))), ist[key], 0.0)
        i_has = ist["n"] > 0
        cols += [np.log1p(ist["n"]), np.log1p(ist["exposures"]), i_has.astype(np.float64)]
        age = np.where(i_has, ts_s - np.nan_to_num(ist["first_ts"]) / 1000.0, 0.0)
        cols += [np.log1p(np.maximum(age, 0.0))]
        i_pos = ist["positives"].reshape(n, n_b)
        for j in range(n_b):
            cols += [
                (i_pos[:, j] + SMOOTHING * g[j]) / (ist["exposures"] + SMOOTHING),
                np.log1p(i_pos[:, j]),
            ]
        if self.mode_ == "rating":
            cols += [
                (ist["value_sum"] + SMOOTHING * self.global_value_) / (ist["value_n"] + SMOOTHING)
            ]

        cats = self.item_side_.categories
        if cats is not None:
            ev_cat = np.where(valid_item[:, None], cats[np.maximum(ev.item, 0)], 0.0)
            cs_cat = cum(ev_cat)
            profile = cs_cat[end] - cs_cat[start]  # (N, C)
            profile /= np.maximum(length, 1)[:, None]
            cand_cat = np.where(known[:, None], cats[safe_item], 0.0)
            cols += [np.einsum("nc,nc->n", profile, cand_cat) * cats.shape[1]]
            recent_start = np.maximum(start, end - RECENT)
            recent = (cs_cat[end] - cs_cat[recent_start]) / np.maximum(end - recent_start, 1)[
                :, None
            ]
            cols += [np.einsum("nc,nc->n", recent, cand_cat) * cats.shape[1]]

        # latent affinity: the history's mean item factor · the candidate's (cosine)
        factors = self.item_factors_
        ev_f = np.where(valid_item[:, None], factors[np.maximum(ev.item, 0)], 0.0)
        cs_f = cum(ev_f)
        cand_f = np.where(known[:, None], factors[safe_item], 0.0)
        cand_norm = np.linalg.norm(cand_f, axis=1)
        for lo in (start, np.maximum(start, end - RECENT)):
            prof = cs_f[end] - cs_f[lo]
            denom = np.linalg.norm(prof, axis=1) * cand_norm
            dot = np.einsum("nk,nk->n", prof, cand_f)
            cols += [np.where(denom > 0, dot / np.maximum(denom, 1e-12), 0.0)]

        # the user's own past with this item: as-of join on (user, item)
        seen, since_seen, cand_pos = self._seen_before(ev, user, item, timestamp, end)
        cols += [np.log1p(seen), since_seen]
        cols += [np.log1p(cand_pos[:, j]) for j in range(n_b)]

        # co-occurrence with the last items and the last positive item
        lasts = np.full((n, LAST_ITEMS), -1, dtype=np.int64)
        for k in range(LAST_ITEMS):
            pos = end - 1 - k
            ok = pos >= start
            lasts[ok, k] = ev.item[pos[ok]] if ok.any() else lasts[ok, k]
        cos = np.stack(
            [self._cosine(item, lasts[:, k], user, in_train) for k in range(LAST_ITEMS)], 1
        )
        present = lasts >= 0
        cols += [
            np.where(present.any(axis=1), np.where(present, cos, -1).max(axis=1), 0.0),
            cos.sum(axis=1) / np.maximum(present.sum(axis=1), 1),
            cos[:, 0],
        ]
        idx = np.where(ev.positive[:, 0], np.arange(len(ev.item)), -1)
        last_pos_idx = np.maximum.accumulate(idx) if len(idx) else idx
        lp = np.where(has, last_pos_idx[last] if len(idx) else -1, -1)
        lp_item = np.where(lp >= start, ev.item[np.maximum(lp, 0)] if len(idx) else -1, -1)
        cols += [self._cosine(item, lp_item, user, in_train)]
        # transitions: how often the candidate was the next exposure after the last positive
        # item (the example's own transition left out in training)
        own = (own_event & (lp_item >= 0) & known).astype(np.float64)
        count = np.maximum(_pair_values(self.trans_, lp_item, item) - own, 0.0)
        out_total = np.where(lp_item >= 0, self.trans_out_[np.maximum(lp_item, 0)], 0.0)
        out_total = np.maximum(out_total - own, 0.0)
        cols += [count / (out_total + 1.0), np.log1p(count)]

        su = user if side_user is None else side_user
        su_ok = su >= 0
        for name, x in self.user_side_.numeric.items():
            v = np.where(su_ok, x[np.maximum(su, 0)], np.nan)
            cols += [np.where(np.isfinite(v), v, self.side_means_[f"user_{name}"])]
        for name, x in self.item_side_.numeric.items():
            v = np.where(known, x[safe_item], np.nan)
            cols += [np.where(np.isfinite(v), v, self.side_means_[f"item_{name}"])]
        numeric = (
            np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
        )
        if self.numeric_range_ is not None:
            # never extrapolate past the training range (e.g. item age when serving much later)
            numeric = np.clip(numeric, self.numeric_range_[0], self.numeric_range_[1])

        cat_cols = [
            np.where(su_ok, c[np.maximum(su, 0)], 0) for c in self.user_side_.categorical.values()
        ]
        cat_cols += [np.where(known, c[safe_item], 0) for c in self.item_side_.categorical.values()]
        categorical = (
            np.stack(cat_cols, axis=1).astype(np.int64) if cat_cols else np.zeros((n, 0), np.int64)
        )

        big_l = self.history_length
        slot = np.arange(big_l)
        take = np.minimum(length, big_l)
        pos = (end - take)[:, None] + slot[None, :]
        valid = slot[None, :] < take[:, None]
        pos = np.where(valid, pos, 0)
        if len(ev.item):
            hist_item = np.where(valid, ev.item[pos], -1)
            hist_token = np.where(valid, ev.token[pos], -1)
            hist_gap = np.where(valid, ts_s[:, None] - ev.timestamp[pos] / 1000.0, 0.0)
        else:
            hist_item = np.full((n, big_l), -1, dtype=np.int64)
            hist_token = hist_item.copy()
            hist_gap = np.zeros((n, big_l))
        return FeatureBatch(
            numeric=numeric,
            numeric_names=self.numeric_names,
            categorical=categorical,
            categorical_names=self.categorical_names,
            cardinalities=self.cardinalities,
            item=np.where(known, item, -1).astype(np.int64),
            hist_item=hist_item.astype(np.int64),
            hist_token=hist_token.astype(np.int64),
            hist_gap_s=np.maximum(hist_gap, 0.0).astype(np.float64),
        )

    def _seen_before(
        self, ev: EventTable, user: IntArray, item: IntArray, timestamp: IntArray, end: IntArray
    ) -> tuple[F64, F64, F64]:
        """How often the user had the item before, seconds since (log1p; 0 if never), and
        the positives per behaviour on it."""
        n, n_b = len(user), len(self.behaviours_)
        if len(ev.item) == 0:
            return np.zeros(n), np.zeros(n), np.zeros((n, n_b))
        frame = pl.DataFrame(
            {
                "u": ev.user,
                "i": ev.item,
                "t": ev.timestamp,
                **{f"p{j}": ev.positive[:, j].astype(np.int64) for j in range(n_b)},
            }
        ).with_columns(
            pl.int_range(pl.len()).over(["u", "i"]).alias("k"),
            *[pl.col(f"p{j}").cum_sum().over(["u", "i"]) for j in range(n_b)],
        )
        frame = frame.sort("t")
        query = pl.DataFrame({"u": user, "i": item, "t": timestamp, "row": np.arange(n)}).sort("t")
        joined = query.join_asof(
            frame.rename({"t": "t_prev"}).with_columns(pl.col("t_prev").alias("t")),
            on="t",
            by=["u", "i"],
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        ).sort("row")
        seen = (joined["k"].fill_null(-1).to_numpy() + 1).astype(np.float64)
        t_prev = joined["t_prev"].to_numpy().astype(np.float64)
        since = np.where(
            seen > 0, np.log1p(np.maximum(timestamp - np.nan_to_num(t_prev), 0) / 1000.0), 0.0
        )
        pos = np.stack(
            [joined[f"p{j}"].fill_null(0).to_numpy().astype(np.float64) for j in range(n_b)], axis=1
        )
        return seen, since, pos

    def _cosine(
        self, a: IntArray, b: IntArray, user: IntArray, in_train: npt.NDArray[np.bool_]
    ) -> F64:
        """Co-occurrence cosine of item pairs, the example's own user left out in training."""
        both = _pair_values(self.cooc_, a, b)
        da = np.where(a >= 0, self.item_degree_[np.maximum(a, 0)], 0.0)
        db = np.where(b >= 0, self.item_degree_[np.maximum(b, 0)], 0.0)
        if in_train.any():
            rows = np.flatnonzero(in_train)
            ua = _pair_values(self.x_train_, user[rows], a[rows])
            ub = _pair_values(self.x_train_, user[rows], b[rows])
            both[rows] -= ua * ub
            da[rows] -= ua
            db[rows] -= ub
        ok = (a >= 0) & (b >= 0) & (da > 0) & (db > 0) & (a != b)
        out = np.zeros(len(a))
        out[ok] = both[ok] / np.sqrt(da[ok] * db[ok])
        out[(a == b) & (a >= 0)] = 1.0
        return out

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the fitted state to ``path`` (json + safetensors + parquet vocabularies)."""
        self._check()
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "global_rate": self.global_rate_,
            "x_indptr": self.x_train_.indptr.astype(np.int64),
            "x_indices": self.x_train_.indices.astype(np.int64),
            "x_data": self.x_train_.data.astype(np.float32),
            "t_indptr": self.trans_.indptr.astype(np.int64),
            "t_indices": self.trans_.indices.astype(np.int64),
            "t_data": self.trans_.data.astype(np.float32),
            "item_factors": self.item_factors_,
        }
        if self.numeric_range_ is not None:
            arrays["numeric_lo"], arrays["numeric_hi"] = self.numeric_range_
        for key, value in self.snapshot_.__dict__.items():
            arrays[f"snap_{key}"] = np.asarray(value, dtype=np.float64)
        for prefix, side in (("user", self.user_side_), ("item", self.item_side_)):
            for name, x in side.categorical.items():
                arrays[f"{prefix}_cat_{name}"] = x
            for name, values in side.numeric.items():
                arrays[f"{prefix}_num_{name}"] = values
            if side.categories is not None:
                arrays[f"{prefix}_categories"] = side.categories
        save_file(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()},
            str(path / "features.safetensors"),
        )
        spec = {
            "history_length": self.history_length,
            "mode": self.mode_,
            "behaviours": self.behaviours_,
            "tokens": self.tokens_,
            "rating_threshold": self.rating_threshold_,
            "sampling_rate": self.sampling_rate_,
            "global_value": self.global_value_,
            "side_means": self.side_means_,
            "x_shape": list(self.x_train_.shape),
            "user_side": {
                "categorical": list(self.user_side_.categorical),
                "cardinality": self.user_side_.cardinality,
                "numeric": list(self.user_side_.numeric),
            },
            "item_side": {
                "categorical": list(self.item_side_.categorical),
                "cardinality": self.item_side_.cardinality,
                "numeric": list(self.item_side_.numeric),
                "category_names": self.item_side_.category_names,
            },
        }
        (path / "features.json").write_text(json.dumps(spec, indent=2))
        self.users_.save(path / "users.parquet")
        self.items_.save(path / "items.parquet")

    @classmethod
    def load(cls, path: Path) -> FeatureEncoder:
        """Read an encoder written by `save`."""
        try:
            return cls._load(path)
        except KeyError as exc:
            raise ArtifactError(
                f"the feature encoder in {path} lacks {exc}: it was written by another version "
                "of RecPilot; fit the behaviour model again"
            ) from exc

    @classmethod
    def _load(cls, path: Path) -> FeatureEncoder:
        try:
            spec: dict[str, Any] = json.loads((path / "features.json").read_text())
            arrays = load_file(str(path / "features.safetensors"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read the feature encoder in {path}: {exc}") from exc
        enc = cls(history_length=int(spec["history_length"]))
        enc.mode_ = spec["mode"]
        enc.behaviours_ = list(spec["behaviours"])
        enc.tokens_ = list(spec["tokens"])
        enc.rating_threshold_ = spec["rating_threshold"]
        enc.sampling_rate_ = {k: float(v) for k, v in spec["sampling_rate"].items()}
        enc.global_value_ = float(spec["global_value"])
        enc.side_means_ = {k: float(v) for k, v in spec["side_means"].items()}
        enc.global_rate_ = arrays["global_rate"]
        if "numeric_lo" in arrays:
            enc.numeric_range_ = (arrays["numeric_lo"], arrays["numeric_hi"])
        enc.users_ = Vocabulary.load(path / "users.parquet", name="user")
        enc.items_ = Vocabulary.load(path / "items.parquet", name="item")
        shape = tuple(spec["x_shape"])
        enc.x_train_ = sp.csr_matrix(
            (arrays["x_data"], arrays["x_indices"], arrays["x_indptr"]), shape=shape
        )
        n_items = len(enc.items_)
        enc.item_factors_ = arrays["item_factors"]
        enc.trans_ = sp.csr_matrix(
            (arrays["t_data"], arrays["t_indices"], arrays["t_indptr"]), shape=(n_items, n_items)
        )
        enc.snapshot_ = SnapshotItemStats(
            **{k[5:]: v for k, v in arrays.items() if k.startswith("snap_")}
        )
        sides = []
        for prefix in ("user", "item"):
            s = spec[f"{prefix}_side"]
            side = SideFeatures(
                categorical={n: arrays[f"{prefix}_cat_{n}"] for n in s["categorical"]},
                cardinality={k: int(v) for k, v in s["cardinality"].items()},
                numeric={n: arrays[f"{prefix}_num_{n}"] for n in s["numeric"]},
                categories=arrays.get(f"{prefix}_categories"),
                category_names=list(s.get("category_names", [])),
            )
            sides.append(side)
        enc.user_side_, enc.item_side_ = sides
        enc._set_cooc()
        return enc
