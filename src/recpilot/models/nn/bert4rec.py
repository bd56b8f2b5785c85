"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained by masked-item prediction.

Built from the same parts as SASRec (item table with its tied output head, learned positions,
pre-LN blocks), with bidirectional attention and a key padding mask. One extra learned vector is
the ``[MASK]`` token (token ``I + 1``): training replaces random positions by it and predicts
the items behind them; inference appends it after the history and reads its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from recpilot.models.nn.blocks import (
    Dropout,
    init_gpt2_weights,
    transformer_stack,
)
from recpilot.models.nn.embeddings import (
    PAD,
    ItemEmbedding,
    PositionEmbedding,
    event_type_vectors,
    positions_from_end,
    positions_from_start,
    sequence_type_embedding,
)


@dataclass(frozen=True)
class BERT4RecModuleConfig:
    """Architecture of a `BERT4Rec` module.

    Attributes:
        n_items: catalogue size ``I``.
        max_len: longest input ``L``, the appended ``[MASK]`` included.
        d_model: hidden size ``D``.
        n_layers: Transformer blocks.
        n_heads: attention heads per block.
        d_ff: feed-forward width (None: ``4 * D``).
        dropout: dropout on embeddings and residual branches.
        attn_dropout: dropout on attention weights.
        positions: ``"from_end"`` (0 = last slot) or ``"from_start"`` (0 = oldest).
        n_event_types: event types whose learned vector is added to each event's item vector
            (0: none); a ``[MASK]`` slot gets the padding type (its event is not known).
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    d_ff: int | None = None
    dropout: float = 0.2
    attn_dropout: float = 0.0
    positions: Literal["from_end", "from_start"] = "from_end"
    n_event_types: int = 0


def mask_positions(
    lengths: torch.Tensor, seq_len: int, prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Positions to hide behind ``[MASK]``: each real slot with probability ``prob``.

    A row that drew no mask gets its last real slot masked (the inference situation), so
    every row trains on at least one target; padding is never masked.

    Args:
        lengths: ``(B,)`` real slots per right-padded row (``>= 1``).
        seq_len: ``L``.
        prob: mask probability in ``(0, 1]``.
        generator: random source (None: torch's global one).

    Returns:
        ``(B, L)`` bool.
    """
    slots = torch.arange(seq_len, device=lengths.device)
    real = slots[None, :] < lengths[:, None]  # (B, L)
    draw = torch.rand(real.shape, generator=generator, device=lengths.device)
    masked = (draw < prob) & real
    none = ~masked.any(dim=1)  # (B,)
    last = slots[None, :] == (lengths[:, None] - 1)
    return masked | (none[:, None] & last)


class BERT4Rec(nn.Module):
    """Item (+ ``[MASK]``) and position embeddings → bidirectional pre-LN blocks → tied head."""

    def __init__(self, config: BERT4RecModuleConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.items = ItemEmbedding(config.n_items, d)
        self.mask_token = config.n_items + 1
        self.mask = nn.Parameter(torch.randn(d) * 0.02)
        self.positions = PositionEmbedding(config.max_len, d)
        self.dropout = Dropout(config.dropout)
        self.blocks = transformer_stack(
            d,
            config.n_heads,
            config.d_ff,
            config.dropout,
            config.n_layers,
            causal=False,
            attn_dropout=config.attn_dropout,
        )
        self.ln_f = nn.LayerNorm(d)
        init_gpt2_weights(self, config.n_layers)
        # made last: a model without event types draws the same initial weights as before
        self.types = sequence_type_embedding(config.n_event_types, d)

    def embed(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, L)`` tokens (``I + 1`` = ``[MASK]``) → ``(B, L, D)`` embeddings with dropout;
        ``types``: event-type codes (``[MASK]`` slots get the padding code 0), or None."""
        L = tokens.shape[1]
        if self.config.max_len < L:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        is_mask = tokens == self.mask_token  # (B, L)
        x = self.items(torch.where(is_mask, PAD, tokens))  # (B, L, D)
        x = torch.where(is_mask[..., None], self.mask.to(x.dtype) * self.items.factor, x)
        if self.config.positions == "from_end":
            pos = positions_from_end(lengths, L)
        else:
            pos = positions_from_start(lengths, L)
        x = x + self.positions(pos)
        if self.types is not None:
            if types is not None:
                types = torch.where(is_mask, PAD, types)  # the masked event's type is hidden too
            x = x + event_type_vectors(self.types, types, tokens)
        return self.dropout(x)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden state of every slot, each having seen the whole row (padding excluded).

        Args:
            tokens: ``(B, L)`` right-padded tokens (item index + 1; 0 = padding; ``I + 1`` =
                ``[MASK]``).
            lengths: ``(B,)`` real slots per row.
            types: ``(B, L)`` event-type codes (0 = padding), or None (unknown); ignored by a
                model without event types.

        Returns:
            ``(B, L, D)``.
        """
        x = self.embed(tokens, lengths, types)  # (B, L, D)
        keys = (tokens != PAD)[:, None, None, :]  # (B, 1, 1, L): never attend to padding
        for block in self.blocks:
            x = block(x, keys)
        return self.ln_f(x)

    def last_hidden(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-item query: append ``[MASK]`` after each history and read its output.

        Args:
            tokens: ``(B, L)`` right-padded history tokens, ``L <= max_len - 1``.
            lengths: ``(B,)`` history lengths (``>= 1``).
            types: ``(B, L)`` event-type codes of the history, or None (unknown).

        Returns:
            ``(B, D)``.
        """
        B = tokens.shape[0]
        rows = torch.arange(B, device=tokens.device)
        padded = torch.cat([tokens, tokens.new_zeros(B, 1)], dim=1)  # (B, L + 1)
        padded[rows, lengths] = self.mask_token
        if types is not None:
            types = torch.cat([types, types.new_zeros(B, 1)], dim=1)  # (B, L + 1)
        hidden = self(padded, lengths + 1, types)  # (B, L + 1, D)
        return hidden[rows, lengths]

    def item_weight(self) -> torch.Tensor:
        """``(I, D)`` item vectors of the tied output head."""
        return self.items.item_weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` hidden states → ``(..., I)`` scores of every item."""
        return self.items.logits(hidden)
