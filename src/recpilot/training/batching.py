"""Training batches of whole user sequences, built with numpy from `Interactions`.

One sample per user: the most recent ``max_len + 1`` events ``s``; the input is ``s[:-1]``
and the target at every position ``t`` is ``s[t + 1]``, so a causal model learns from every
position in one pass. Rows are right-padded (token 0) to the longest row of their batch,
rounded up to a multiple of ``pad_multiple`` (capped at ``max_len``); users are shuffled each
epoch by a seeded generator, and pools of batches are sorted by length first so that a batch
holds sequences of similar lengths (little padding to compute on).

Why the rounding: oneDNN (torch's CPU kernels for bf16 products and some fp32 element-wise
operations such as GELU) builds and caches one kernel per tensor shape, up to 1,024 of them.
With a new batch width nearly every step, that cache grew for the whole run (ML-1M, SASRec
config, 8 epochs: resident memory 1.3 → 3.0 GB, 3.45 GB peak); with widths rounded to
multiples of 32 (and the bf16 head's row chunks rounded too, see `losses`) it stays at 1.3 GB
(1.6 GB peak), at the same seconds per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recpilot.data.interactions import Interactions
from recpilot.types import IntArray


@dataclass(frozen=True)
class SequenceBatch:
    """A batch of right-padded sequences with next-item targets.

    Attributes:
        tokens: ``(B, L)`` int64 input tokens (item index + 1; 0 = padding).
        lengths: ``(B,)`` int64 real positions per row (``>= 1``).
        targets: ``(B, L)`` int64 next item index per position, -1 at padding.
        timestamps: ``(B, L)`` int64 event times of the inputs (0 at padding), or None.
        event_types: ``(B, L)`` int64 event-type codes of the inputs (0 at padding), or None
            when the model reads no event types.
        target_event_types: ``(B, L)`` int64 event-type codes of the targets (0 at padding),
            or None (BERT4Rec's whole sequences need the type of the last event too).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    timestamps: torch.Tensor | None = None
    event_types: torch.Tensor | None = None
    target_event_types: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: torch.device) -> SequenceBatch:
        """The same batch on ``device`` (itself when already there)."""
        if self.tokens.device == device:
            return self

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return SequenceBatch(
            self.tokens.to(device, non_blocking=True),
            self.lengths.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            move(self.timestamps),
            move(self.event_types),
            move(self.target_event_types),
        )

    @property
    def n_targets(self) -> int:
        """Positions with a target (the sum of ``lengths``)."""
        return int(self.lengths.sum())


def pack_times(histories: Sequence[np.ndarray], max_len: int) -> torch.Tensor:
    """Right-padded event times, laid out as `pack_right` lays out the items.

    Args:
        histories: ``B`` non-empty arrays of event times, aligned with the item histories.
        max_len: longest row kept (older events are cut).

    Returns:
        ``(B, L)`` int64, 0 at padding.
    """
    lengths = [min(len(h), max_len) for h in histories]
    out = np.zeros((len(histories), max(lengths, default=0)), dtype=np.int64)
    for row, (h, n) in enumerate(zip(histories, lengths, strict=True)):
        out[row, :n] = np.asarray(h[len(h) - n :], dtype=np.int64)
    return torch.from_numpy(out)


def pack_right(histories: Sequence[np.ndarray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens of the last ``max_len`` items of each history (inference input).

    Args:
        histories: ``B`` non-empty arrays of item indices in time order.
        max_len: longest row kept (older events are cut).

    Returns:
        ``(tokens (B, L), lengths (B,))`` with ``L = min(max_len, longest history)``.
    """
    lengths = np.fromiter(
        (min(len(h), max_len) for h in histories), dtype=np.int64, count=len(histories)
    )
    width = int(lengths.max()) if len(lengths) else 0
    tokens = np.zeros((len(histories), width), dtype=np.int64)
    for row, (h, n) in enumerate(zip(histories, lengths, strict=True)):
        tokens[row, :n] = np.asarray(h[len(h) - n :], dtype=np.int64) + 1
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


class SequenceBatcher:
    """Shuffled batches of every user's training sequence, one sample per user.

    Args:
        data: training events (sorted by user, then time, as `Interactions` are).
        max_len: input positions per sample (the last ``max_len + 1`` events are used).
        batch_size: sequences per batch.
        length_bucketing: pools of this many batches are sorted by length before being cut
            into batches (the batch order is shuffled again afterwards); 1 turns it off.
        event_types: ``(N,)`` int64 event-type code of every event of ``data`` (the model's
            codes, ``>= 1``), or None: batches carry no event types.
        pad_multiple: batch widths are rounded up to a multiple of this (at most
            ``max_len``), so that batches come in few shapes; 1, or a ``max_len`` that is not
            larger (at most that many shapes anyway): the longest row's length.

    Users with fewer than 2 events have no target and are skipped.
    """

    def __init__(
        self,
        data: Interactions,
        max_len: int,
        batch_size: int,
        length_bucketing: int = 32,
        event_types: IntArray | None = None,
        pad_multiple: int = 1,
    ) -> None:
        if min(max_len, batch_size, length_bucketing, pad_multiple) < 1:
            raise ValueError(
                f"max_len, batch_size, length_bucketing and pad_multiple must be >= 1, got "
                f"{max_len}, {batch_size}, {length_bucketing}, {pad_multiple}"
            )
        self.max_len = max_len
        self.batch_size = batch_size
        self.length_bucketing = length_bucketing
        self.pad_multiple = pad_multiple
        ptr = data.user_ptr
        n_events = np.diff(ptr)
        users = np.flatnonzero(n_events >= 2)
        window = np.minimum(n_events[users], max_len + 1)  # events used per sample
        self.users: IntArray = users
        self.starts: IntArray = ptr[users + 1] - window  # first event of each sample
        self.lengths: IntArray = window - 1  # input positions = targets per sample
        self._items = np.ascontiguousarray(data.item_idx, dtype=np.int64)
        self._times = np.ascontiguousarray(data.timestamp, dtype=np.int64)
        self._types: IntArray | None = None
        if event_types is not None:
            if len(event_types) != len(self._items):
                raise ValueError(
                    f"event_types has {len(event_types)} entries, the data {len(self._items)} "
                    "events"
                )
            self._types = np.ascontiguousarray(event_types, dtype=np.int64)

    @property
    def n_sequences(self) -> int:
        return len(self.users)

    @property
    def n_targets(self) -> int:
        """Positions with a target per epoch."""
        return int(self.lengths.sum())

    @property
    def n_batches(self) -> int:
        return -(-self.n_sequences // self.batch_size)

    def batch(self, rows: IntArray) -> SequenceBatch:
        """The batch of samples ``rows`` (indices into ``users``), right-padded.

        Args:
            rows: ``(B,)`` sample indices.
        """
        starts = self.starts[rows]  # (B,)
        lengths = self.lengths[rows]  # (B,)
        width = int(lengths.max())
        if self.max_len > self.pad_multiple:  # else there are at most pad_multiple widths
            width = min(self.max_len, -(-width // self.pad_multiple) * self.pad_multiple)
        slots = np.arange(width)  # (L,)
        valid = slots[None, :] < lengths[:, None]  # (B, L)
        idx = starts[:, None] + slots[None, :]  # (B, L) event rows of the inputs
        last = len(self._items) - 1
        tokens = np.where(valid, self._items[np.minimum(idx, last)] + 1, 0)
        targets = np.where(valid, self._items[np.minimum(idx + 1, last)], -1)
        times = np.where(valid, self._times[np.minimum(idx, last)], 0)
        types = next_types = None
        if self._types is not None:
            types = torch.from_numpy(np.where(valid, self._types[np.minimum(idx, last)], 0))
            next_types = torch.from_numpy(
                np.where(valid, self._types[np.minimum(idx + 1, last)], 0)
            )
        return SequenceBatch(
            torch.from_numpy(tokens),
            torch.from_numpy(lengths.copy()),
            torch.from_numpy(targets),
            torch.from_numpy(times),
            types,
            next_types,
        )

    def order(self, rng: np.random.Generator) -> list[IntArray]:
        """One epoch's batches as arrays of sample indices.

        Args:
            rng: the generator that shuffles (advanced by the call).
        """
        perm = rng.permutation(self.n_sequences)
        pool = self.batch_size * self.length_bucketing
        batches: list[IntArray] = []
        for lo in range(0, len(perm), pool):
            chunk = perm[lo : lo + pool]
            if self.length_bucketing > 1:
                chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            )
        return [batches[i] for i in rng.permutation(len(batches))]

    def epoch(self, rng: np.random.Generator) -> Iterator[SequenceBatch]:
        """Shuffled batches covering every sample once."""
        for rows in self.order(rng):
            yield self.batch(rows)
