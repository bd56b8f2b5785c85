"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over a user's item sequence.

One file, small modules, built from a dataclass config (nanoGPT style). The output head is
tied to the item embeddings: ``logits = h @ E[1:]ᵀ``. Sequences are right-padded (real events
first), so causal attention alone keeps padding out of every real position's view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from recpilot.models.nn.blocks import (
    Dropout,
    TransformerBlock,
    init_gpt2_weights,
    transformer_stack,
)
from recpilot.models.nn.embeddings import (
    ItemEmbedding,
    PositionEmbedding,
    event_type_vectors,
    positions_from_end,
    positions_from_start,
    sequence_type_embedding,
)


@dataclass(frozen=True)
class SASRecModuleConfig:
    """Architecture of a `SASRec` module.

    Attributes:
        n_items: catalogue size ``I``.
        max_len: longest input sequence ``L`` (number of position embeddings).
        d_model: hidden size ``D``.
        n_layers: Transformer blocks.
        n_heads: attention heads per block.
        d_ff: feed-forward width (None: ``4 * D``).
        dropout: dropout on embeddings and residual branches.
        attn_dropout: dropout on attention weights (0 keeps CPU attention on the fused
            kernel).
        positions: ``"from_end"`` (0 = most recent event) or ``"from_start"`` (0 = oldest).
        n_event_types: event types whose learned vector is added to each event's item vector
            (0: the model reads no event types).
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


class SASRec(nn.Module):
    """Item, position (and event-type) embeddings → causal pre-LN blocks → final LayerNorm →
    tied head."""

    def __init__(self, config: SASRecModuleConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.items = ItemEmbedding(config.n_items, d)
        self.positions = PositionEmbedding(config.max_len, d)
        self.dropout = Dropout(config.dropout)
        self.blocks = transformer_stack(
            d,
            config.n_heads,
            config.d_ff,
            config.dropout,
            config.n_layers,
            causal=True,
            attn_dropout=config.attn_dropout,
        )
        self.ln_f = nn.LayerNorm(d)
        init_gpt2_weights(self, config.n_layers)
        # made last: a model without event types draws the same initial weights as before
        self.types = sequence_type_embedding(config.n_event_types, d)

    def embed(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item plus position (plus event-type) embeddings, with dropout: ``(B, L)`` tokens →
        ``(B, L, D)``; ``types`` is ignored by a model without event types."""
        L = tokens.shape[1]
        if self.config.max_len < L:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        if self.config.positions == "from_end":
            pos = positions_from_end(lengths, L)  # (B, L)
        else:
            pos = positions_from_start(lengths, L)
        x = self.items(tokens) + self.positions(pos)  # (B, L, D)
        if self.types is not None:
            x = x + event_type_vectors(self.types, types, tokens)
        return self.dropout(x)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden state after every position.

        Args:
            tokens: ``(B, L)`` right-padded tokens (item index + 1; 0 = padding), ``L <= max_len``.
            lengths: ``(B,)`` real events per row.
            types: ``(B, L)`` event-type codes of the inputs (see `event_type_vectors`), or
                None (unknown); ignored by a model without event types.

        Returns:
            ``(B, L, D)``; row ``b``, position ``t < lengths[b]`` has seen tokens ``0..t`` only.
        """
        x = self.embed(tokens, lengths, types)  # (B, L, D)
        for block in self.blocks:
            x = block(x)  # (B, L, D)
        return self.ln_f(x)  # (B, L, D)

    def last_hidden(
        self, tokens: torch.Tensor, lengths: torch.Tensor, types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden state after each row's last real event (the next-item query).

        Args:
            tokens: ``(B, L)`` right-padded tokens; every row has ``lengths[b] >= 1``.
            lengths: ``(B,)``.
            types: ``(B, L)`` event-type codes or None (see `forward`).

        Returns:
            ``(B, D)``.
        """
        x = self.embed(tokens, lengths, types)  # (B, L, D)
        for block in self.blocks[:-1]:
            x = block(x)  # (B, L, D)
        # the last block only at the last position: a third of the work of a full pass
        last = self.blocks[-1]
        assert isinstance(last, TransformerBlock)
        return self.ln_f(last.forward_at(x, lengths - 1))  # (B, D)

    def item_weight(self) -> torch.Tensor:
        """``(I, D)`` item vectors of the tied output head."""
        return self.items.item_weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` hidden states → ``(..., I)`` scores of every item."""
        return self.items.logits(hidden)
