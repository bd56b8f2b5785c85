"""HSTU-style generative recommender (Zhai et al., ICML 2024; facebookresearch/generative-recommenders).

An HSTU block replaces softmax attention and the feed-forward layer by one gated unit::

    U, V, Q, K = split(SiLU(f1(LN(x))))
    A = SiLU(Q Kᵀ + rab(p, t)) / n          causal, no softmax ("pointwise aggregated")
    Y = f2(LN(A V) ⊙ U)
    x ← x + Y

``rab`` is a relative attention bias learned per layer and head from the bucketed relative
position ``t - s`` and the bucketed time gap ``ts[t] - ts[s]`` (log buckets,
`time_gap_buckets`). ``n`` is the constant ``max_len``, so a row's outputs do not depend on
how much padding its batch has. Items, positions and the tied head are the ones SASRec uses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recpilot.models.nn.blocks import Dropout
from recpilot.models.nn.embeddings import (
    ItemEmbedding,
    PositionEmbedding,
    event_type_vectors,
    positions_from_end,
    sequence_type_embedding,
    time_gap_buckets,
)


@dataclass(frozen=True)
class HSTUModuleConfig:
    """Architecture of an `HSTU` module.

    Attributes:
        n_items: catalogue size ``I``.
        max_len: longest input ``L`` (also the attention normaliser ``n``).
        d_model: hidden size ``D`` (each of U, V, Q, K has ``D`` columns).
        n_layers: HSTU blocks.
        n_heads: heads ``H`` (``D`` must be a multiple of ``H``).
        dropout: dropout on embeddings and block outputs.
        time_buckets: log-2 buckets of time gaps in the relative bias (0: no time bias).
        position_bias: learn a relative position bias.
        n_event_types: event types whose learned vector is added to each event's item vector
            (0: the model reads no event types).
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    time_buckets: int = 32
    position_bias: bool = True
    n_event_types: int = 0


def hstu_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, n: float
) -> torch.Tensor:
    """Causal pointwise aggregated attention: ``(SiLU(Q Kᵀ + bias) / n ⊙ causal) V``.

    Args:
        q: ``(B, H, L, d)`` queries.
        k: ``(B, H, L, d)`` keys.
        v: ``(B, H, L, d)`` values.
        bias: ``(B | 1, H | 1, L, L)`` relative attention bias, or None.
        n: normaliser (the maximum sequence length).

    Returns:
        ``(B, H, L, d)``; position ``t`` aggregates positions ``s <= t`` only.
    """
    L = q.shape[2]
    scores = q @ k.transpose(-1, -2)  # (B, H, L, L)
    if bias is not None:
        scores.add_(bias)  # in place: the product's backward needs q and k, not its output
    # one multiply by a (L, L) mask that is 1/n on and below the diagonal and 0 above it, in
    # place of a masked fill and a division (each a pass over the B·H·L² weights)
    scale = causal_scale(L, n, q.device, q.dtype)
    if torch.is_grad_enabled() and scores.requires_grad:
        weights = F.silu(scores) * scale  # (B, H, L, L)
    else:  # inference: no autograd graph, so the weights overwrite the scores
        weights = F.silu(scores, inplace=True).mul_(scale)
    return weights @ v


def hstu_attention_at(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    index: torch.Tensor,
    n: float,
) -> torch.Tensor:
    """`hstu_attention` for one query position per row (inference: the last event).

    Args:
        q: ``(B, H, 1, d)`` the query at position ``index[b]``.
        k: ``(B, H, L, d)`` keys.
        v: ``(B, H, L, d)`` values.
        bias: ``(B, H | 1, 1, L)`` the bias row of that query, or None.
        index: ``(B,)`` the query positions; keys after them are ignored.
        n: normaliser.

    Returns:
        ``(B, H, 1, d)``.
    """
    L = k.shape[2]
    scores = q @ k.transpose(-1, -2)  # (B, H, 1, L)
    if bias is not None:
        scores = scores + bias
    visible = torch.arange(L, device=q.device)[None, :] <= index[:, None]  # (B, L)
    weights = F.silu(scores) * (visible.to(q.dtype) / n)[:, None, None, :]
    return weights @ v


@functools.lru_cache(maxsize=32)
def causal_scale(L: int, n: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(L, L)`` lower-triangular matrix of ``1 / n`` (cached: one per length and device).

    Made outside inference mode even when first asked for while scoring, so that training can
    use the cached tensor too.
    """
    with torch.inference_mode(False), torch.no_grad():
        return torch.full((L, L), 1.0 / n, device=device, dtype=dtype).tril()


class RelativeBias(nn.Module):
    """Learned bias from bucketed relative positions and time gaps, per head.

    Args:
        max_len: longest sequence (relative positions ``0 .. max_len - 1``).
        n_heads: heads ``H``.
        time_buckets: number of time-gap buckets (0: none); index 0 of the table is "no
            timestamps", bucket ``j`` is row ``j + 1``.
        position_bias: learn the position part.
    """

    def __init__(self, max_len: int, n_heads: int, time_buckets: int, position_bias: bool) -> None:
        super().__init__()
        self.max_len = max_len
        self.time_buckets = time_buckets
        self.position = nn.Parameter(torch.zeros(max_len, n_heads)) if position_bias else None
        self.time = nn.Parameter(torch.zeros(time_buckets + 1, n_heads)) if time_buckets else None

    def forward(self, seq_len: int, time_index: torch.Tensor | None) -> torch.Tensor | None:
        """The bias to add to the attention scores.

        Args:
            seq_len: ``L``.
            time_index: ``(B, L, L)`` int64 rows of the time table (see `time_index`), or None.

        Returns:
            ``(B | 1, H, L, L)`` or None when the block has no bias.
        """
        bias: torch.Tensor | None = None
        if self.position is not None:
            slots = torch.arange(seq_len, device=self.position.device)
            rel = (slots[:, None] - slots[None, :]).clamp(0, self.max_len - 1)  # (L, L)
            bias = self.position[rel].permute(2, 0, 1)[None]  # (1, H, L, L)
        if self.time is not None and time_index is not None:
            t = self.time[time_index].permute(0, 3, 1, 2)  # (B, H, L, L)
            bias = t if bias is None else bias + t
        return bias

    def row(
        self, seq_len: int, index: torch.Tensor, time_row: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The bias row of query position ``index[b]`` (what `forward` gives at that row).

        Args:
            seq_len: ``L``.
            index: ``(B,)`` query positions.
            time_row: ``(B, L)`` that row of the time index, or None.

        Returns:
            ``(B, H, 1, L)`` or None when the block has no bias.
        """
        bias: torch.Tensor | None = None
        if self.position is not None:
            slots = torch.arange(seq_len, device=index.device)
            rel = (index[:, None] - slots[None, :]).clamp(0, self.max_len - 1)  # (B, L)
            bias = self.position[rel].permute(0, 2, 1)[:, :, None, :]  # (B, H, 1, L)
        if self.time is not None and time_row is not None:
            t = self.time[time_row].permute(0, 2, 1)[:, :, None, :]  # (B, H, 1, L)
            bias = t if bias is None else bias + t
        return bias


def time_index(
    timestamps: torch.Tensor | None, batch: int, seq_len: int, n_buckets: int, device: torch.device
) -> torch.Tensor:
    """Rows of the time-bias table for every (query, key) pair.

    Args:
        timestamps: ``(B, L)`` event times, negative where unknown, or None (all unknown).
        batch: ``B``.
        seq_len: ``L``.
        n_buckets: time buckets.
        device: where to build the result.

    Returns:
        ``(B, L, L)`` int64: ``1 + bucket(ts[t] - ts[s])``, or 0 where either time is unknown.
    """
    if timestamps is None:
        return torch.zeros(batch, seq_len, seq_len, dtype=torch.long, device=device)
    gaps = timestamps[:, :, None] - timestamps[:, None, :]  # (B, L, L)
    known = (timestamps[:, :, None] >= 0) & (timestamps[:, None, :] >= 0)
    return torch.where(known, time_gap_buckets(gaps, n_buckets) + 1, 0)


class HSTUBlock(nn.Module):
    """One HSTU layer (see the module docstring).

    Args:
        d_model: hidden size ``D``.
        n_heads: heads ``H``.
        dropout: dropout on the block output.
        max_len: longest sequence (attention normaliser and position-bias size).
        time_buckets: time-gap buckets of the relative bias (0: none).
        position_bias: learn a relative position bias.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float,
        max_len: int,
        time_buckets: int,
        position_bias: bool = True,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.n_heads = n_heads
        self.max_len = max_len
        self.ln_in = nn.LayerNorm(d_model)
        self.f1 = nn.Linear(d_model, 4 * d_model)
        self.ln_attn = nn.LayerNorm(d_model)
        self.f2 = nn.Linear(d_model, d_model)
        self.rab = RelativeBias(max_len, n_heads, time_buckets, position_bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, time_idx: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D)`` → ``(B, L, D)``; ``time_idx``: ``(B, L, L)`` from `time_index`."""
        B, L, D = x.shape
        H = self.n_heads
        u, v, q, k = F.silu(self.f1(self.ln_in(x))).split(D, dim=2)  # 4 × (B, L, D)
        q = q.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        k = k.view(B, L, H, D // H).transpose(1, 2)
        v = v.view(B, L, H, D // H).transpose(1, 2)
        bias = self.rab(L, time_idx)
        with torch.autocast(x.device.type, enabled=False):
            a = hstu_attention(q.float(), k.float(), v.float(), bias, float(self.max_len))
        a = a.to(x.dtype).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return x + self.dropout(self.f2(self.ln_attn(a) * u))

    def forward_at(
        self, x: torch.Tensor, index: torch.Tensor, time_idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``forward(x, time_idx)[arange(B), index]`` without computing the other positions'
        queries and outputs (inference: the last block at the last event).

        Args:
            x: ``(B, L, D)``.
            index: ``(B,)`` position per row.
            time_idx: ``(B, L, L)`` from `time_index`, or None.

        Returns:
            ``(B, D)``; dropout is off at inference.
        """
        B, L, D = x.shape
        H = self.n_heads
        rows = torch.arange(B, device=x.device)
        w, b = self.f1.weight, self.f1.bias  # (4D, D), (4D,): u, v, q, k
        h = self.ln_in(x)  # (B, L, D)
        uq = F.silu(
            F.linear(
                h[rows, index],
                torch.cat([w[:D], w[2 * D : 3 * D]]),
                torch.cat([b[:D], b[2 * D : 3 * D]]),
            )
        )  # (B, 2D)
        u, q = uq.split(D, dim=1)  # 2 × (B, D)
        kv = F.silu(
            F.linear(
                h, torch.cat([w[D : 2 * D], w[3 * D :]]), torch.cat([b[D : 2 * D], b[3 * D :]])
            )
        )  # (B, L, 2D)
        v, k = kv.split(D, dim=2)  # 2 × (B, L, D)
        q = q.view(B, 1, H, D // H).transpose(1, 2)  # (B, H, 1, D/H)
        k = k.reshape(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        v = v.reshape(B, L, H, D // H).transpose(1, 2)
        bias = self.rab.row(L, index, None if time_idx is None else time_idx[rows, index])
        with torch.autocast(x.device.type, enabled=False):
            a = hstu_attention_at(q.float(), k.float(), v.float(), bias, index, float(self.max_len))
        a = a.to(x.dtype).reshape(B, D)  # (B, D)
        return x[rows, index] + self.f2(self.ln_attn(a) * u)


class HSTU(nn.Module):
    """Item, position (and event-type) embeddings → causal HSTU blocks → final LayerNorm →
    tied head."""

    def __init__(self, config: HSTUModuleConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.items = ItemEmbedding(config.n_items, d)
        self.positions = PositionEmbedding(config.max_len, d)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            HSTUBlock(
                d,
                config.n_heads,
                config.dropout,
                config.max_len,
                config.time_buckets,
                config.position_bias,
            )
            for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.startswith(("items.", "positions.")) or p.dim() < 2 or ".rab." in name:
                continue
            std = 0.02 / math.sqrt(2 * config.n_layers) if name.endswith("f2.weight") else 0.02
            nn.init.normal_(p, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        # made last: a model without event types draws the same initial weights as before
        self.types = sequence_type_embedding(config.n_event_types, d)

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        timestamps: torch.Tensor | None = None,
        types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden state after every position.

        Args:
            tokens: ``(B, L)`` right-padded tokens (item index + 1; 0 = padding).
            lengths: ``(B,)`` real events per row.
            timestamps: ``(B, L)`` int64 event times (any unit, negative = unknown; padding
                slots ignored), or None when unknown.
            types: ``(B, L)`` event-type codes (see `event_type_vectors`), or None (unknown);
                ignored by a model without event types.

        Returns:
            ``(B, L, D)``; position ``t`` has seen tokens (and times, types) ``0..t`` only.
        """
        x, t_idx = self._embed(tokens, lengths, timestamps, types)  # (B, L, D)
        for block in self.blocks:
            x = block(x, t_idx)
        return self.ln_f(x)

    def _embed(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        timestamps: torch.Tensor | None,
        types: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The blocks' input ``(B, L, D)`` and the time-bias index (None without one)."""
        B, L = tokens.shape
        if self.config.max_len < L:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        x = self.items(tokens) + self.positions(positions_from_end(lengths, L))
        if self.types is not None:
            x = x + event_type_vectors(self.types, types, tokens)
        x = self.dropout(x)  # (B, L, D)
        t_idx = None
        if self.config.time_buckets:
            t_idx = time_index(timestamps, B, L, self.config.time_buckets, tokens.device)
        return x, t_idx

    def last_hidden(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        timestamps: torch.Tensor | None = None,
        types: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, D)`` hidden state after each row's last real event (see `forward`); the last
        block computes that position only."""
        x, t_idx = self._embed(tokens, lengths, timestamps, types)  # (B, L, D)
        for block in self.blocks[:-1]:
            x = block(x, t_idx)
        last = self.blocks[-1]
        assert isinstance(last, HSTUBlock)
        return self.ln_f(last.forward_at(x, lengths - 1, t_idx))  # (B, D)

    def item_weight(self) -> torch.Tensor:
        """``(I, D)`` item vectors of the tied output head."""
        return self.items.item_weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` hidden states → ``(..., I)`` scores of every item."""
        return self.items.logits(hidden)
