"""`Vocabulary`: id ⇄ index both ways, for string and integer ids, one at a time and many."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recpilot.data.vocab import Vocabulary
from recpilot.errors import UnknownIdError
from recpilot.types import UNKNOWN


def test_string_ids_map_both_ways() -> None:
    vocab = Vocabulary(["b", "a", "c"])
    assert vocab.get_many(["a", "zz", "c"]) == [1, UNKNOWN, 2]
    assert vocab.get("c") == 2 and vocab.get("nope") == UNKNOWN
    assert vocab.lookup([2, 0]) == ["c", "b"]
    np.testing.assert_array_equal(vocab.index(["c", "a"]), [2, 1])
    with pytest.raises(UnknownIdError):
        vocab.index_of("nope")


def test_integer_ids_accept_their_string_form_only() -> None:
    vocab = Vocabulary(pl.Series([10, 20, 30]))
    assert vocab.get_many(["20", 30, "x", 2.5, None]) == [1, 2, UNKNOWN, UNKNOWN, UNKNOWN]
    assert vocab.get("10") == 0 and vocab.get("1e1") == UNKNOWN
    assert vocab.lookup(np.array([0, 2])) == [10, 30]


def test_large_lookups_match_small_ones() -> None:
    vocab = Vocabulary([f"i{n}" for n in range(5000)])
    many = np.arange(4999, -1, -1)
    assert vocab.lookup(many) == [f"i{n}" for n in many]  # the polars path (> 1,000)
    assert vocab.lookup(many[:10]) == [f"i{n}" for n in many[:10]]  # the list path
    with pytest.raises(IndexError):
        vocab.lookup([5000])


def test_extend_keeps_old_indices_and_lookups_stay_fresh() -> None:
    vocab = Vocabulary(["a", "b"])
    assert vocab.lookup([1]) == ["b"]  # builds the cached lists of the old vocabulary
    grown = vocab.extend(["c", "a"])
    assert grown.get_many(["a", "b", "c"]) == [0, 1, 2]
    assert grown.lookup([2]) == ["c"] and vocab.get("c") == UNKNOWN
