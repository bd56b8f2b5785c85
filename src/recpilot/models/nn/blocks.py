"""Transformer blocks for sequence models: pre-LayerNorm, `F.scaled_dot_product_attention`.

One block serves causal models (SASRec: ``causal=True``, right padding needs no mask because
no real position attends to a later slot) and bidirectional ones (BERT4Rec: pass a key
padding mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout whose keep decisions come from random bytes.

    Same as `nn.Dropout` with ``p`` rounded to a multiple of 1/256, and several times faster
    on CPU, where ``bernoulli_`` draws one random number per element (this draws one per 8).
    Uses torch's global generator, so `torch.manual_seed` makes it reproducible.

    Args:
        p: drop probability in ``[0, 1)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = min(255, round(p * 256))  # a byte below it drops the element

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(...)`` → ``(...)``: identity in eval mode."""
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(256.0 / (256 - self.threshold))

    def extra_repr(self) -> str:
        return f"p={self.threshold / 256:.4f}"


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection.

    Args:
        d_model: hidden size ``D``.
        n_heads: heads ``H`` (``D`` must be a multiple of ``H``).
        dropout: dropout on the output.
        causal: position ``t`` attends to positions ``<= t`` only.
        attn_dropout: dropout on the attention weights (None: ``dropout``). On CPU, a
            positive value makes attention fall back from the fused flash kernel to the
            unfused one, which is slower.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float,
        causal: bool,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.n_heads = n_heads
        self.causal = causal
        self.attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.out_dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend.

        Args:
            x: ``(B, L, D)``.
            attn_mask: optional bool ``(B, 1, L, L)`` or ``(B, 1, 1, L)``, True where attention
                is allowed (combined with the causal mask when ``causal``).

        Returns:
            ``(B, L, D)``.
        """
        B, L, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 × (B, L, D)
        q = q.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        k = k.view(B, L, H, D // H).transpose(1, 2)
        v = v.view(B, L, H, D // H).transpose(1, 2)
        is_causal = self.causal
        if attn_mask is not None and self.causal:
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            attn_mask = attn_mask & causal
            is_causal = False
        if x.device.type == "cpu" and q.dtype == torch.bfloat16:
            # the CPU flash kernel is about twice as slow in bf16 as in fp32
            q, k, v = q.float(), k.float(), v.float()
        with torch.autocast(x.device.type, enabled=False):
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.attn_dropout if self.training else 0.0,
                is_causal=is_causal,
            )  # (B, H, L, D/H)
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.out_dropout(self.proj(y))

    def forward_at(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Causal attention output at one position per row (inference: the last event).

        Same as ``forward(x)[arange(B), index]`` for a causal layer, without computing the
        queries and outputs of the other positions.

        Args:
            x: ``(B, L, D)``.
            index: ``(B,)`` position per row; keys after it are ignored.

        Returns:
            ``(B, D)``.
        """
        B, L, D = x.shape
        H = self.n_heads
        w, b = self.qkv.weight, self.qkv.bias  # (3D, D), (3D,)
        rows = torch.arange(B, device=x.device)
        q = F.linear(x[rows, index], w[:D], b[:D])  # (B, D)
        k, v = F.linear(x, w[D:], b[D:]).split(D, dim=2)  # 2 × (B, L, D)
        q = q.view(B, 1, H, D // H).transpose(1, 2)  # (B, H, 1, D/H)
        k = k.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        v = v.view(B, L, H, D // H).transpose(1, 2)
        visible = torch.arange(L, device=x.device)[None, :] <= index[:, None]  # (B, L)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
        return self.proj(y.reshape(B, D))  # (B, D); dropout is off at inference


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU.

    Args:
        d_model: hidden size ``D``.
        d_ff: inner width.
        dropout: dropout on the output.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` → ``(B, L, D)``."""
        return self.dropout(self.down(F.gelu(self.up(x))))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(LN(x))``, then ``x + ffn(LN(x))``.

    Args:
        d_model: hidden size ``D``.
        n_heads: attention heads.
        d_ff: feed-forward width.
        dropout: dropout on both residual branches.
        causal: causal (SASRec, HSTU) or bidirectional (BERT4Rec) attention.
        attn_dropout: dropout on the attention weights (None: ``dropout``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        causal: bool = True,
        attn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout, causal, attn_dropout)
        self.ln_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L, D)`` → ``(B, L, D)`` (see `SelfAttention` for ``attn_mask``)."""
        x = x + self.attn(self.ln_attn(x), attn_mask)
        return x + self.ffn(self.ln_ffn(x))

    def forward_at(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Output at one position per row of a causal block (see `SelfAttention.forward_at`).

        Args:
            x: ``(B, L, D)``.
            index: ``(B,)``.

        Returns:
            ``(B, D)``, equal to ``forward(x)[arange(B), index]``.
        """
        h = x[torch.arange(len(index), device=x.device), index]  # (B, D)
        h = h + self.attn.forward_at(self.ln_attn(x), index)
        return h + self.ffn(self.ln_ffn(h))


def transformer_stack(
    d_model: int,
    n_heads: int,
    d_ff: int | None,
    dropout: float,
    n_layers: int,
    *,
    causal: bool,
    attn_dropout: float = 0.0,
) -> nn.ModuleList:
    """``n_layers`` pre-LN `TransformerBlock`s (``d_ff`` None: ``4 * d_model``)."""
    return nn.ModuleList(
        TransformerBlock(
            d_model,
            n_heads,
            d_ff or 4 * d_model,
            dropout,
            causal=causal,
            attn_dropout=attn_dropout,
        )
        for _ in range(n_layers)
    )


def init_gpt2_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation shared by the Transformer models.

    N(0, 0.02) matrices, zero biases, residual output projections scaled by
    1/sqrt(2 * layers) so the residual stream keeps its scale; item and position tables keep
    their own initialisation.
    """
    for name, p in module.named_parameters():
        if name.startswith(("items.", "positions.")) or p.dim() < 2:
            continue
        std = 0.02
        if name.endswith(("attn.proj.weight", "ffn.down.weight")):
            std /= math.sqrt(2 * n_layers)
        nn.init.normal_(p, std=std)
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
