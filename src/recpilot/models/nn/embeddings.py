"""Embedding tables shared by the sequence models: items (with padding) and positions.

Token convention: item index ``i`` is token ``i + 1``; token 0 is padding. Sequences are
right-padded (real events first, padding after), so a causal model never attends to padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


def item_tokens(items: torch.Tensor) -> torch.Tensor:
    """Item indices → tokens (``i + 1``; negative indices become padding).

    Args:
        items: ``(...)`` int64 item indices, -1 for none.

    Returns:
        ``(...)`` int64 tokens.
    """
    return torch.where(items >= 0, items + 1, PAD)


def positions_from_end(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Position of each slot counted back from the row's last real event.

    The most recent event has position 0 whatever the row's length, as with SASRec's
    left padding; padding slots get 0 as well (their outputs are never read).

    Args:
        lengths: ``(B,)`` real events per row (right-padded rows).
        seq_len: ``L``, the padded length.

    Returns:
        ``(B, L)`` int64 positions.
    """
    slots = torch.arange(seq_len, device=lengths.device)  # (L,)
    return (lengths[:, None] - 1 - slots[None, :]).clamp_min(0)  # (B, L)


def positions_from_start(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Position of each slot counted from the row's first (oldest) event: ``0 .. L-1``.

    Args:
        lengths: ``(B,)`` real events per row.
        seq_len: ``L``, the padded length.

    Returns:
        ``(B, L)`` int64 positions.
    """
    slots = torch.arange(seq_len, device=lengths.device)
    return slots[None, :].expand(len(lengths), seq_len)


class ItemEmbedding(nn.Module):
    """Item table with a padding row; also the tied output layer of the models.

    Args:
        n_items: catalogue size ``I`` (the table has ``I + 1`` rows, row 0 is padding).
        d_model: embedding size ``D``.
        scale: multiply looked-up vectors by ``sqrt(D)`` (as SASRec and the Transformer do).
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(
        self, n_items: int, d_model: int, scale: bool = True, init_std: float = 0.02
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.d_model = d_model
        self.table = nn.Embedding(n_items + 1, d_model, padding_idx=PAD)
        self.factor = math.sqrt(d_model) if scale else 1.0
        nn.init.normal_(self.table.weight, std=init_std)
        with torch.no_grad():
            self.table.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Look up tokens.

        Args:
            tokens: ``(B, L)`` int64 tokens (0 = padding).

        Returns:
            ``(B, L, D)`` embeddings (zero at padding).
        """
        return self.table(tokens) * self.factor

    @property
    def item_weight(self) -> torch.Tensor:
        """``(I, D)`` the item vectors without the padding row (the tied output weights)."""
        return self.table.weight[1:]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output head: a score for every item.

        Args:
            hidden: ``(..., D)`` hidden states.

        Returns:
            ``(..., I)`` logits ``hidden @ E[1:]ᵀ``.
        """
        return F.linear(hidden, self.item_weight)


class PositionEmbedding(nn.Module):
    """Learned absolute position table.

    Args:
        max_len: number of positions.
        d_model: embedding size ``D``.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Look up positions.

        Args:
            positions: ``(B, L)`` int64 in ``[0, max_len)``.

        Returns:
            ``(B, L, D)``.
        """
        return self.table(positions)


def time_gap_buckets(gaps: torch.Tensor, n_buckets: int, base: float = 2.0) -> torch.Tensor:
    """Logarithmic buckets of time gaps (as HSTU's relative time bias and TiSASRec do).

    Bucket ``j`` holds gaps in ``[base**j, base**(j+1))`` (gaps below 1 go to bucket 0), capped at
    ``n_buckets - 1``: fine resolution for seconds-apart events, coarse for months-apart ones.
    Non-decreasing in ``|gap|``.

    Args:
        gaps: ``(...)`` int64 or float time differences (the sign is ignored).
        n_buckets: number of buckets (``>= 1``).
        base: ratio between consecutive bucket edges (``> 1``).

    Returns:
        ``(...)`` int64 buckets in ``[0, n_buckets)``.
    """
    if n_buckets < 1 or base <= 1.0:
        raise ValueError(f"need n_buckets >= 1 and base > 1, got {n_buckets} and {base}")
    g = gaps.abs().to(torch.float64).clamp_min(1.0)
    # float64 log keeps exact powers of the base on their own bucket edge
    buckets = torch.floor(torch.log(g) / math.log(base) + 1e-9).long()
    return buckets.clamp(0, n_buckets - 1)


class EventTypeEmbedding(nn.Module):
    """Learned vector per event type (view, click, cart, buy, ...), added to the item vectors.

    Args:
        n_types: number of event types (row ``n_types`` is "unknown" and stays trainable).
        d_model: embedding size ``D``.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(self, n_types: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.n_types = n_types
        self.table = nn.Embedding(n_types + 1, d_model)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, types: torch.Tensor) -> torch.Tensor:
        """Look up event types.

        Args:
            types: ``(B, L)`` int64 type codes; negative or ``>= n_types`` means unknown.

        Returns:
            ``(B, L, D)``.
        """
        known = (types >= 0) & (types < self.n_types)
        return self.table(torch.where(known, types, self.n_types))


def sequence_type_embedding(n_event_types: int, d_model: int) -> EventTypeEmbedding | None:
    """The event-type table of a sequence model, or None when it reads no event types.

    Codes (see `event_type_vectors`): 0 is padding (and BERT4Rec's ``[MASK]`` slot, whose
    event is not known yet), ``1 .. n_event_types`` the types learned at fit time, anything
    else (e.g. -1) "unknown" — a type never seen in training, or a query without types.
    """
    return EventTypeEmbedding(n_event_types + 1, d_model) if n_event_types > 0 else None


def event_type_vectors(
    table: EventTypeEmbedding, types: torch.Tensor | None, tokens: torch.Tensor
) -> torch.Tensor:
    """``(B, L, D)`` event-type vectors to add to the item vectors.

    Args:
        table: the model's `sequence_type_embedding`.
        types: ``(B, L)`` int64 codes aligned with ``tokens`` (0 = padding, ``1..n`` known,
            other values unknown), or None: every slot unknown.
        tokens: ``(B, L)`` the item tokens (shape and device of the codes).
    """
    if types is None:
        types = torch.full_like(tokens, -1)
    if types.shape != tokens.shape:
        raise ValueError(
            f"event types {tuple(types.shape)} do not match the tokens {tuple(tokens.shape)}"
        )
    return table(types)


class HybridItemEmbedding(ItemEmbedding):
    """Item vectors from an ID table plus a learned projection of fixed text vectors.

    ``v_i = (E_i if has_id_i and keep_i else u) + W t_i``: ``t_i`` is the item's frozen text
    vector (a buffer saved with the weights), ``W`` a learned ``(D, T)`` projection, ``has_id_i``
    says whether the item had training events (an item without any is represented by its
    text), ``keep_i`` is ID-dropout: in training each item's ID part is hidden with
    probability ``id_dropout``, so the model learns to rank and read items whose ID it does
    not know; ``u`` is a learned "unknown ID" vector that stands in for a hidden or missing ID
    (DropoutNet-style), so an unknown item sits at the level of a typical item rather than at
    zero. Inputs and the tied head use the same vectors; padding stays zero.

    Args:
        n_items: catalogue size ``I``.
        d_model: embedding size ``D``.
        text: ``(I, T)`` text vectors (zero rows: no text).
        has_id: ``(I,)`` bool, items whose ID embedding is trained.
        id_dropout: share of ID parts hidden per training step.
        scale: multiply input vectors by ``sqrt(D)``.
        init_std: standard deviation of the normal initialisation (table and projection).
    """

    text: torch.Tensor  # (I + 1, T) buffer, row 0 (padding) zero
    has_id: torch.Tensor  # (I + 1,) bool buffer

    def __init__(
        self,
        n_items: int,
        d_model: int,
        text: torch.Tensor,
        has_id: torch.Tensor,
        id_dropout: float = 0.0,
        scale: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__(n_items, d_model, scale, init_std)
        if text.shape[0] != n_items or has_id.shape != (n_items,):
            raise ValueError(
                f"text {tuple(text.shape)} and has_id {tuple(has_id.shape)} need {n_items} rows"
            )
        if not 0 <= id_dropout < 1:
            raise ValueError(f"id_dropout must be in [0, 1), got {id_dropout}")
        self.id_dropout = id_dropout
        self.text_proj = nn.Linear(text.shape[1], d_model, bias=False)
        nn.init.normal_(self.text_proj.weight, std=init_std)
        self.unknown_id = nn.Parameter(torch.zeros(d_model))
        pad_text = torch.zeros(1, text.shape[1], dtype=torch.float32)
        self.register_buffer("text", torch.cat([pad_text, text.float()]))  # (I + 1, T)
        self.register_buffer("has_id", torch.cat([torch.zeros(1, dtype=torch.bool), has_id.bool()]))

    def vectors(self) -> torch.Tensor:
        """``(I + 1, D)`` item vectors (row 0, padding, is zero)."""
        text: torch.Tensor = self.text
        keep: torch.Tensor = self.has_id
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.id_dropout)
        weight = self.table.weight
        ids = torch.where(keep[:, None], weight, self.unknown_id.to(weight.dtype))  # (I + 1, D)
        out = ids + self.text_proj(text)  # (I + 1, D)
        return torch.cat([torch.zeros_like(out[:1]), out[1:]])  # padding row stays zero

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` tokens → ``(B, L, D)`` hybrid vectors (zero at padding)."""
        return F.embedding(tokens, self.vectors(), padding_idx=PAD) * self.factor

    @property
    def item_weight(self) -> torch.Tensor:
        """``(I, D)`` hybrid item vectors (the tied output weights)."""
        return self.vectors()[1:]

    @torch.no_grad()
    def add_items(self, text: torch.Tensor) -> None:
        """Append ``n`` items described by text alone (``(n, T)`` vectors, zero ID part)."""
        n = text.shape[0]
        old = self.table
        table = nn.Embedding(self.n_items + 1 + n, self.d_model, padding_idx=PAD)
        table.to(device=old.weight.device, dtype=old.weight.dtype)
        table.weight.zero_()
        table.weight[: self.n_items + 1] = old.weight
        self.table = table
        buf_text: torch.Tensor = self.text
        buf_has: torch.Tensor = self.has_id
        self.text = torch.cat([buf_text, text.to(buf_text)])
        self.has_id = torch.cat([buf_has, torch.zeros(n, dtype=torch.bool, device=buf_has.device)])
        self.n_items += n

    @torch.no_grad()
    def set_text(self, rows: torch.Tensor, text: torch.Tensor) -> None:
        """Replace the text vectors of item indices ``rows`` (``(n,)``) with ``(n, T)``."""
        buf: torch.Tensor = self.text
        buf[rows + 1] = text.to(buf)
