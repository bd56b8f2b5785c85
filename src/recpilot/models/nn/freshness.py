"""Item freshness: a learned bias on the age of each candidate item at the query time.

A cold item (no training event, represented by its text alone) competes in a full ranking
with every warm item, whose ID embedding carries its popularity; nothing in the item vectors
says that a new item is a likely next choice. `ItemFreshness` adds that signal to the logits
of the tied head:

    logit(q, i) = h_q · v_i(q) + b[bucket(q, i)] - [i unseen at t_q] · log n_unseen(t_q)

- ``t_q`` is the query time (in training the time of the position's input event, when
  serving the time of the last history event); ``f_i`` the time the item was first seen
  (its first training event, or its catalogue addition time for items added later;
  `NEVER` for an item never seen).
- Item ``i`` is *seen* at ``t_q`` when ``f_i < t_q``; ``bucket = 1 + ⌊log2(t_q - f_i)⌋``
  (capped), in the event clock's unit (milliseconds in `recpilot.data`). An item not seen yet is in bucket 0, "new": its age is ≈ 0.
- ``v_i(q)`` is the hybrid vector (ID + text) of a seen item and the text-only vector
  (unknown-ID vector + projected text) of an unseen one, so in training an item whose first
  event is the target is scored exactly as a cold item is scored when serving: from its text,
  with the "new" bias. (ID-dropout still hides the IDs of random seen items.)
- The unseen items share the "new" bucket's mass: ``-log n_unseen`` makes ``b[0]`` the log
  chance that the next item is one never seen before, whatever the number of such items
  (thousands early in a log, the freshly added items when serving).

The strict ``f_i < t_q`` keeps the training target out of the "seen" items at its own first
event: an item's first event is always a "new" target, never an age-0 "seen" one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

#: first-seen time of an item never seen (it stays "new" at any query time)
NEVER = torch.iinfo(torch.int64).max


class ItemFreshness(nn.Module):
    """Per-item first-seen times and the learned bias per log2 age bucket.

    Args:
        first_seen: ``(I,)`` int64 first-seen time of every item (`NEVER`: never seen).
        n_buckets: age buckets, "new" (bucket 0) included; seen items fall in buckets
            ``1 .. n_buckets - 1`` by ``⌊log2 age⌋`` (ages below 2 in bucket 1, the last
            bucket open-ended; 42 reaches ``2**40`` ms, 35 years).
        clock: the latest time the model knows (the query time of a query without event
            times), e.g. the last training event; None: the latest first-seen time.
    """

    #: logits per chunk of rows in `loss` (a larger batch is checkpointed chunk by chunk)
    chunk_logits = 2**26

    first_seen: torch.Tensor  # (I,) int64 buffer
    clock: torch.Tensor  # () int64 buffer: latest time the model knows (the default query time)

    def __init__(
        self, first_seen: torch.Tensor, n_buckets: int = 42, clock: int | None = None
    ) -> None:
        super().__init__()
        if n_buckets < 2 or n_buckets > 62:
            raise ValueError(f"n_buckets must be in [2, 62], got {n_buckets}")
        self.n_buckets = n_buckets
        first = first_seen.to(torch.int64).reshape(-1)
        self.register_buffer("first_seen", first.clone())
        finite = first[first != NEVER]
        if clock is None:
            clock = int(finite.max()) if len(finite) else 0
        self.register_buffer("clock", torch.tensor(clock, dtype=torch.int64))
        self.bias = nn.Parameter(torch.zeros(n_buckets))

    @property
    def n_items(self) -> int:
        return int(self.first_seen.shape[0])

    def buckets(self, times: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64 query times → ``(N, I)`` uint8 age buckets (0: not seen yet).

        ``1 + ⌊log2 age⌋`` is the binary exponent of the age (``frexp``, exact in float64).
        """
        t = times.to(torch.int64)[:, None]  # (N, 1)
        first = self.first_seen[None, :]  # (1, I)
        age = t - first  # (N, I); at NEVER: negative (wraps only for t < 0: masked below)
        seen = (age > 0) & (first != NEVER)
        _, exponent = torch.frexp(age.double())  # age = m * 2**e, m in [0.5, 1); exact
        bucket = exponent.clamp_(1, self.n_buckets - 1).to(torch.uint8)
        return bucket.masked_fill_(~seen, 0)

    def _bias(self, bucket: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seen, bias)`` of a ``(N, I)`` bucket grid (see `forward`)."""
        seen = bucket > 0
        n_new = (~seen).sum(dim=1, keepdim=True).clamp_min(1)  # (N, 1)
        bias = F.embedding(bucket.long(), self.bias[:, None])[..., 0]  # (N, I)
        return seen, bias - torch.where(seen, 0.0, torch.log(n_new.float()))

    def forward(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which items are seen at each query time, and their bias.

        Args:
            times: ``(N,)`` int64 query times.

        Returns:
            ``(seen (N, I) bool, bias (N, I) float)``.
        """
        return self._bias(self.buckets(times))

    def logits(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        text_only: torch.Tensor,
        times: torch.Tensor,
        bucket: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N, I)`` logits: hybrid vectors for seen items, text-only for unseen, plus bias.

        Args:
            hidden: ``(N, D)`` query vectors.
            weight: ``(I, D)`` item vectors (ID + text; the tied head).
            text_only: ``(I, D)`` item vectors without their ID (unknown-ID vector + text).
            times: ``(N,)`` int64 query times.
            bucket: ``(N, I)`` the age buckets of ``times`` when already computed.
        """
        seen, bias = self._bias(self.buckets(times) if bucket is None else bucket)
        full = F.linear(hidden, weight.to(hidden.dtype))  # (N, I)
        text = F.linear(hidden, text_only.to(hidden.dtype))  # (N, I)
        return torch.where(seen, full, text).float() + bias

    def target_buckets(self, times: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64 age buckets of one item per query time (0: not seen yet)."""
        first = self.first_seen[items]
        age = times.to(torch.int64) - first
        seen = (age > 0) & (first != NEVER)
        _, exponent = torch.frexp(age.double())
        return torch.where(seen, exponent.clamp(1, self.n_buckets - 1).long(), 0)

    def loss(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        text_only: torch.Tensor,
        times: torch.Tensor,
    ) -> torch.Tensor:
        """Mean softmax cross-entropy over the whole catalogue with the freshness logits.

        Never builds the ``(N, I)`` bucket grid: with the items sorted by first-seen time,
        newest first, the items not seen yet at ``t`` are a prefix and each seen age bucket a
        contiguous run after it (its bounds found by binary search, ``(N, n_buckets)``), so
        the softmax normaliser is a sum of segment sums of ``exp(logits)`` read off two
        running sums (hybrid vectors, text-only vectors). Equal to the cross-entropy of
        `logits` (up to float rounding). Chunks of rows are recomputed in the backward pass
        (activation checkpointing) when a batch has more than `chunk_logits` logits.

        Args:
            hidden: ``(N, D)`` hidden states of the positions with a target.
            targets: ``(N,)`` target item indices.
            weight: ``(I, D)`` item vectors.
            text_only: ``(I, D)`` text-only item vectors.
            times: ``(N,)`` query times.
        """
        first = self.first_seen
        ascending = torch.sort(first).values  # (I,)
        order = torch.argsort(first, descending=True, stable=True)  # newest first, NEVER first
        n_items = len(first)
        # age >= 2**(k-1) <=> first <= t - 2**(k-1), k = 1 .. n_buckets - 1
        steps = torch.tensor(
            [2 ** (k - 1) for k in range(1, self.n_buckets)], dtype=torch.int64, device=first.device
        )

        def chunk_loss(
            h: torch.Tensor,
            w: torch.Tensor,
            tw: torch.Tensor,
            t: torch.Tensor,
            y: torch.Tensor,
        ) -> torch.Tensor:
            t = t.to(torch.int64)
            full = F.linear(h, w[order].to(h.dtype)).float()  # (n, I) newest first
            text = F.linear(h, tw[order].to(h.dtype)).float()
            top = torch.maximum(full.max(dim=1).values, text.max(dim=1).values).detach()
            run_full = torch.exp(full - top[:, None]).cumsum(dim=1)  # (n, I)
            run_text = torch.exp(text - top[:, None]).cumsum(dim=1)

            def prefix(run: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
                """Sums of the first ``count`` entries of each row (``run`` = their cumsum)."""
                got = run.gather(1, (count - 1).clamp_min(0))
                return torch.where(count > 0, got, 0.0)

            # d[:, k-1] = items with age < 2**(k-1) (the unseen included): first > t - 2**(k-1)
            bounds = t[:, None] - steps[None, :]  # (n, K)
            d = n_items - torch.searchsorted(ascending, bounds.contiguous(), right=True)
            d = torch.cat([d, torch.full_like(d[:, :1], n_items)], dim=1)  # (n, K + 1)
            n_new = d[:, 0]  # items not seen before t
            sums = prefix(run_full, d)  # (n, K + 1)
            seg = sums[:, 1:] - sums[:, :-1]  # (n, K): one age bucket each
            new_mass = prefix(run_text, n_new[:, None])[:, 0]  # (n,)
            b = self.bias.float()
            total = (seg.clamp_min(0) * torch.exp(b[1:])[None, :]).sum(dim=1)
            total = total + new_mass * torch.exp(b[0]) / n_new.clamp_min(1).float()
            log_z = top + torch.log(total)
            # the target's own logit
            bucket = self.target_buckets(t, y)
            own = torch.where(
                bucket > 0,
                (h * w[y].to(h.dtype)).sum(dim=1).float(),
                (h * tw[y].to(h.dtype)).sum(dim=1).float(),
            )
            own = (
                own
                + b[bucket]
                - torch.where(bucket > 0, 0.0, torch.log(n_new.clamp_min(1).float()))
            )
            return (log_z - own).sum()

        chunk_size = max(1, self.chunk_logits // max(n_items, 1))
        total = hidden.new_zeros((), dtype=torch.float32)
        for lo in range(0, len(targets), chunk_size):
            part = slice(lo, lo + chunk_size)
            args = (hidden[part], weight, text_only, times[part], targets[part])
            if chunk_size < len(targets):  # several chunks: recompute each in the backward
                out = checkpoint(chunk_loss, *args, use_reentrant=False)
                assert isinstance(out, torch.Tensor)
            else:
                out = chunk_loss(*args)
            total = total + out
        return total / max(len(targets), 1)

    def grid_loss(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        weight: torch.Tensor,
        text_only: torch.Tensor,
        times: torch.Tensor,
    ) -> torch.Tensor:
        """`loss` computed on the whole ``(N, I)`` logits of `logits` (a reference for tests)."""
        return F.cross_entropy(self.logits(hidden, weight, text_only, times), targets)

    @torch.no_grad()
    def init_bias(
        self, times: torch.Tensor, targets: torch.Tensor, prior_items: float = 100.0
    ) -> None:
        """Start the bias from the training positions' statistics (the age analogue of a
        popularity prior), so that it is right before the first step: a few hundred optimiser
        steps of a small learning rate could not move it far.

        ``b[k] = log(targets in bucket k / candidates in bucket k)`` for the seen buckets (the
        chance of a bucket-``k`` item being the next one), smoothed towards the overall rate
        by ``prior_items`` pseudo-candidates; ``b[0] = log(share of targets not seen
        before)``, the "new" group's mass (its ``-log n_unseen`` splits it).

        Args:
            times: ``(N,)`` query times of training positions.
            targets: ``(N,)`` their target items.
            prior_items: smoothing strength.
        """
        n = len(targets)
        if n == 0:
            return
        hits = torch.zeros(self.n_buckets, dtype=torch.float64)
        cands = torch.zeros(self.n_buckets, dtype=torch.float64)
        step = max(1, 2**22 // max(self.n_items, 1))
        for lo in range(0, n, step):
            bucket = self.buckets(times[lo : lo + step])  # (n, I)
            rows = torch.arange(bucket.shape[0])
            hit = bucket[rows, targets[lo : lo + step]].long()
            hits += torch.bincount(hit, minlength=self.n_buckets)
            cands += torch.bincount(bucket.reshape(-1).long(), minlength=self.n_buckets)
        rate = n / max(float(cands.sum()), 1.0)  # overall chance of one candidate
        bias = torch.log((hits + prior_items * rate) / (cands + prior_items))
        bias[0] = torch.log((hits[0] + 1.0) / (n + 1.0))
        self.bias.copy_(bias.to(self.bias))

    @torch.no_grad()
    def add_items(self, first_seen: torch.Tensor) -> None:
        """Append items with their first-seen times (`NEVER`: not seen yet, i.e. new)."""
        added = first_seen.to(self.first_seen).reshape(-1)
        self.first_seen = torch.cat([self.first_seen, added])
        finite = added[added != NEVER]
        if len(finite):
            self.clock = torch.maximum(self.clock, finite.max())

    @torch.no_grad()
    def set_first_seen(self, rows: torch.Tensor, first_seen: torch.Tensor) -> None:
        """Set the first-seen times of item indices ``rows`` (e.g. their catalogue addition)."""
        self.first_seen[rows] = first_seen.to(self.first_seen)
        finite = first_seen[first_seen != NEVER]
        if len(finite):
            self.clock = torch.maximum(self.clock, finite.to(self.clock).max())
