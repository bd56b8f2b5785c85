"""Splits that never leak the future: leave-one-out by time and a global temporal split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recpilot.config import SplitConfig
from recpilot.data.interactions import Interactions
from recpilot.errors import DataError
from recpilot.types import IntArray


@dataclass(frozen=True)
class EvalSet:
    """Users to evaluate, what the model may see of each, and what it must predict.

    ``histories[b]`` holds the item indices that precede user ``users[b]``'s targets, in time
    order; ``targets[b]`` the item indices to predict (one per user for leave-one-out);
    ``cutoffs[b]`` the time of the first target (no history event is later);
    ``history_times[b]`` (optional) the event times aligned with ``histories[b]``, for models
    with time features; ``history_event_types[b]`` (optional) the event type names aligned
    with ``histories[b]``, for models with event-type inputs.
    """

    name: str
    users: IntArray
    histories: tuple[IntArray, ...]
    targets: tuple[IntArray, ...]
    cutoffs: IntArray
    history_times: tuple[IntArray, ...] | None = None
    history_event_types: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return len(self.users)

    @property
    def single_target(self) -> bool:
        return all(len(t) == 1 for t in self.targets)


@dataclass(frozen=True)
class Split:
    """Training events plus validation and test sets.

    ``train`` is what models fit on for model selection; ``train_validation`` adds the
    validation events (what a model may be refitted on before the single test read).
    """

    strategy: str
    train: Interactions
    train_validation: Interactions
    validation: EvalSet
    test: EvalSet

    def eval_set(self, name: str) -> EvalSet:
        if name == "validation":
            return self.validation
        if name == "test":
            return self.test
        raise ValueError(f"unknown split {name!r}: expected 'validation' or 'test'")


def event_type_names(data: Interactions) -> np.ndarray:
    """``(N,)`` object array: the event type name of every event of ``data``."""
    return np.asarray(data.event_types, dtype=object)[data.event_type]


def leave_one_out(data: Interactions) -> Split:
    """Per user: last event = test, second last = validation, the rest = train.

    Users with fewer than 3 events keep all of them in training and are not evaluated.
    The test history is every event before the last one (so it includes the validation event).
    """
    ptr = data.user_ptr
    lengths = np.diff(ptr)
    evaluated = np.flatnonzero(lengths >= 3)
    test_rows = ptr[evaluated + 1] - 1
    val_rows = ptr[evaluated + 1] - 2
    in_train = np.ones(len(data), dtype=bool)
    in_train[test_rows] = False
    in_train[val_rows] = False
    train = data.with_rows(in_train)
    not_test = np.ones(len(data), dtype=bool)
    not_test[test_rows] = False
    train_val = data.with_rows(not_test)
    items = data.item_idx
    val_hist = tuple(items[ptr[u] : r] for u, r in zip(evaluated, val_rows, strict=True))
    test_hist = tuple(items[ptr[u] : r] for u, r in zip(evaluated, test_rows, strict=True))
    times = data.timestamp
    names = event_type_names(data)
    validation = EvalSet(
        "validation",
        evaluated,
        val_hist,
        tuple(items[val_rows, None]),
        times[val_rows],
        tuple(times[ptr[u] : r] for u, r in zip(evaluated, val_rows, strict=True)),
        tuple(names[ptr[u] : r] for u, r in zip(evaluated, val_rows, strict=True)),
    )
    test = EvalSet(
        "test",
        evaluated,
        test_hist,
        tuple(items[test_rows, None]),
        times[test_rows],
        tuple(times[ptr[u] : r] for u, r in zip(evaluated, test_rows, strict=True)),
        tuple(names[ptr[u] : r] for u, r in zip(evaluated, test_rows, strict=True)),
    )
    return Split("leave_one_out", train, train_val, validation, test)


def _period_set(
    name: str, data: Interactions, before: np.ndarray, target_mask: np.ndarray, cutoff: int
) -> EvalSet:
    """Targets = distinct items of ``target_mask`` rows not already in the user's history."""
    ptr = data.user_ptr
    names = event_type_names(data)
    users, hists, hist_times, hist_types, targets = [], [], [], [], []
    for u in np.unique(data.user_idx[target_mask]):
        rows = slice(ptr[u], ptr[u + 1])
        hist = data.item_idx[rows][before[rows]]
        tgt = data.item_idx[rows][target_mask[rows]]
        _, first = np.unique(tgt, return_index=True)
        tgt = tgt[np.sort(first)]
        tgt = tgt[~np.isin(tgt, hist)]
        if len(tgt):
            users.append(u)
            hists.append(hist)
            hist_times.append(data.timestamp[rows][before[rows]])
            hist_types.append(names[rows][before[rows]])
            targets.append(tgt)
    return EvalSet(
        name,
        np.asarray(users, dtype=np.int64),
        tuple(hists),
        tuple(targets),
        np.full(len(users), cutoff, dtype=np.int64),
        tuple(hist_times),
        tuple(hist_types),
    )


def temporal_split(
    data: Interactions, test_fraction: float = 0.1, validation_fraction: float = 0.1
) -> Split:
    """One global clock: the latest events are test, the ones before them validation.

    Cut-offs are timestamps at the given event quantiles; events at or after a cut-off belong
    to the later part, so every training event is strictly earlier than every target. Targets
    already in a user's history are dropped (they could never be recommended with history
    exclusion).
    """
    if len(data) < 3:
        raise DataError(f"a temporal split needs at least 3 events, got {len(data)}")
    ts = np.sort(data.timestamp)
    t_test = int(ts[min(len(ts) - 1, int(np.floor(len(ts) * (1 - test_fraction))))])
    t_val = int(
        ts[min(len(ts) - 1, int(np.floor(len(ts) * (1 - test_fraction - validation_fraction))))]
    )
    if t_val >= t_test or t_val <= ts[0]:
        raise DataError(
            "the temporal split cannot separate train, validation and test: too few distinct "
            "timestamps for the requested fractions"
        )
    train_mask = data.timestamp < t_val
    before_test = data.timestamp < t_test
    val_mask = ~train_mask & before_test
    validation = _period_set("validation", data, train_mask, val_mask, t_val)
    test = _period_set("test", data, before_test, ~before_test, t_test)
    return Split(
        "temporal", data.with_rows(train_mask), data.with_rows(before_test), validation, test
    )


def make_split(data: Interactions, config: SplitConfig) -> Split:
    if config.strategy == "leave_one_out":
        split = leave_one_out(data)
    else:
        split = temporal_split(data, config.test_fraction, config.validation_fraction)
    if len(split.test) == 0:
        raise DataError(
            f"the {config.strategy} split leaves no user to evaluate (users need at least 3 events "
            "for leave-one-out); use more data or lower the filters"
        )
    return split
