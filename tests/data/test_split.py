from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recpilot.config import SplitConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import leave_one_out, make_split, temporal_split
from recpilot.errors import DataError

event_rows = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(0, 40)), min_size=3, max_size=120
)


def _data(rows: list[tuple[int, int, int]]) -> Interactions:
    u, i, t = zip(*rows, strict=True)
    return Interactions.from_frame(
        pl.DataFrame({"user_id": u, "item_id": i, "timestamp": t, "event_type": ["x"] * len(u)})
    )


@settings(max_examples=80, deadline=None)
@given(event_rows)
def test_leave_one_out_never_leaks_the_future(rows: list[tuple[int, int, int]]) -> None:
    data = _data(rows)
    split = leave_one_out(data)
    n_eval = int((data.user_lengths() >= 3).sum())
    assert len(split.test) == len(split.validation) == n_eval
    assert len(split.train) == len(data) - 2 * n_eval
    for eval_set in (split.validation, split.test):
        for b, user in enumerate(eval_set.users):
            rows_u = slice(data.user_ptr[user], data.user_ptr[user + 1])
            hist = eval_set.histories[b]
            # the history is exactly the user's earlier events, in order
            np.testing.assert_array_equal(hist, data.item_idx[rows_u][: len(hist)])
            # no training event of this user is later than the target
            train_ts = split.train.timestamp[split.train.user_idx == user]
            assert (train_ts <= eval_set.cutoffs[b]).all()
    # test history = validation history + validation target
    for b in range(len(split.test)):
        expected = np.append(split.validation.histories[b], split.validation.targets[b])
        np.testing.assert_array_equal(split.test.histories[b], expected)
    # together the parts hold every event exactly once
    assert len(split.train) + len(split.validation) + len(split.test) == len(data)


@settings(max_examples=80, deadline=None)
@given(event_rows, st.floats(0.05, 0.4), st.floats(0.05, 0.4))
def test_temporal_split_never_leaks_the_future(
    rows: list[tuple[int, int, int]], test_fraction: float, validation_fraction: float
) -> None:
    data = _data(rows)
    try:
        split = temporal_split(data, test_fraction, validation_fraction)
    except DataError:
        return  # too few distinct timestamps: refused, not silently wrong
    t_val, t_test = split.validation.cutoffs, split.test.cutoffs
    assert len(split.train) == 0 or split.train.timestamp.max() < (
        t_val.min() if len(t_val) else np.inf
    )
    if len(t_test):
        assert split.train_validation.timestamp.max() < t_test.min()
    for eval_set, before in ((split.validation, split.train), (split.test, split.train_validation)):
        for b, user in enumerate(eval_set.users):
            hist = eval_set.histories[b]
            np.testing.assert_array_equal(hist, before.item_idx[before.user_idx == user])
            assert not np.isin(eval_set.targets[b], hist).any()


def test_short_users_stay_in_training() -> None:
    data = _data([(0, 1, 1), (0, 2, 2), (1, 1, 1), (1, 2, 2), (1, 3, 3)])
    split = leave_one_out(data)
    assert split.test.users.tolist() == [1]
    assert split.train.n_events == 3


def test_make_split_refuses_when_nobody_is_evaluable() -> None:
    data = _data([(0, 1, 1), (0, 2, 2), (1, 1, 1)])
    with pytest.raises(DataError, match="no user to evaluate"):
        make_split(data, SplitConfig())
