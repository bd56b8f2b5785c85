"""BERT4Rec and HSTU modules: masking invariants, causality, the HSTU attention against a
plain reference, and the time-gap buckets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recpilot.models.nn.bert4rec import BERT4Rec, BERT4RecModuleConfig, mask_positions
from recpilot.models.nn.embeddings import EventTypeEmbedding, time_gap_buckets
from recpilot.models.nn.hstu import (
    HSTU,
    HSTUBlock,
    HSTUModuleConfig,
    hstu_attention,
    time_index,
)


def small_bert4rec(**changes: object) -> BERT4Rec:
    torch.manual_seed(0)
    config = {"n_items": 30, "max_len": 10, "d_model": 16, "n_heads": 2, "dropout": 0.0}
    return BERT4Rec(BERT4RecModuleConfig(**{**config, **changes})).eval()  # type: ignore[arg-type]


def small_hstu(**changes: object) -> HSTU:
    torch.manual_seed(0)
    config = {"n_items": 30, "max_len": 10, "d_model": 16, "n_heads": 2, "dropout": 0.0}
    model = HSTU(HSTUModuleConfig(**{**config, **changes}))  # type: ignore[arg-type]
    with torch.no_grad():  # non-zero relative biases, so that the tests exercise them
        for block in model.blocks:
            assert isinstance(block, HSTUBlock)
            for p in block.rab.parameters():
                p.normal_(std=0.5)
    return model.eval()


# -- time buckets ---------------------------------------------------------------------------------
def test_time_buckets_are_logarithmic_and_capped() -> None:
    gaps = torch.tensor([0, 1, 2, 3, 4, 7, 8, 1023, 1024, -8, 10**12])
    buckets = time_gap_buckets(gaps, n_buckets=12)
    assert buckets.tolist() == [0, 0, 1, 1, 2, 2, 3, 9, 10, 3, 11]
    with pytest.raises(ValueError):
        time_gap_buckets(gaps, n_buckets=0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**40), min_size=2, max_size=50), st.integers(1, 40))
def test_time_buckets_are_monotone(gaps: list[int], n_buckets: int) -> None:
    ordered = torch.tensor(sorted(gaps))
    buckets = time_gap_buckets(ordered, n_buckets)
    assert (buckets.diff() >= 0).all()
    assert ((buckets >= 0) & (buckets < n_buckets)).all()


def test_time_index_marks_unknown_times() -> None:
    stamps = torch.tensor([[0, 10, 100], [-1, -1, -1]])
    idx = time_index(stamps, 2, 3, n_buckets=8, device=torch.device("cpu"))
    assert idx.shape == (2, 3, 3)
    assert (idx[1] == 0).all()
    assert idx[0, 2, 0] == 1 + time_gap_buckets(torch.tensor(100), 8)
    assert (time_index(None, 2, 3, 8, torch.device("cpu")) == 0).all()


def test_event_type_embedding_maps_unknown_types_to_one_row() -> None:
    emb = EventTypeEmbedding(3, 4)
    out = emb(torch.tensor([[0, 2, 3, -1]]))
    assert out.shape == (1, 4, 4)
    torch.testing.assert_close(out[0, 2], out[0, 3])


# -- BERT4Rec -------------------------------------------------------------------------------------
def test_masking_never_touches_padding_and_masks_every_row() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 2, 5, 9, 9, 3] * 50)
    L = 9
    real = torch.arange(L)[None, :] < lengths[:, None]
    for prob in (0.01, 0.2, 1.0):
        masked = mask_positions(lengths, L, prob, gen)
        assert not (masked & ~real).any()
        assert masked.any(dim=1).all()
    rate = mask_positions(lengths, L, 0.3, gen)[lengths == 9].float().mean()
    assert 0.25 < rate < 0.35


def test_bert4rec_is_bidirectional_and_ignores_padding() -> None:
    model = small_bert4rec()
    tokens = torch.tensor([[3, 7, 9, 2, 11]])
    changed = tokens.clone()
    changed[0, 4] = 20
    lengths = torch.tensor([5])
    a, b = model(tokens, lengths), model(changed, lengths)
    assert not torch.allclose(a[:, 0], b[:, 0])  # earlier positions see later items
    padded = torch.tensor([[3, 7, 9, 2, 11, 0, 0], [5, 0, 0, 0, 0, 0, 0]])
    out = model(padded, torch.tensor([5, 1]))
    torch.testing.assert_close(out[0, :5], a[0], rtol=1e-5, atol=1e-6)


def test_bert4rec_query_is_the_output_at_an_appended_mask() -> None:
    model = small_bert4rec()
    history = torch.tensor([[3, 7, 9, 0], [4, 1, 2, 8]])
    lengths = torch.tensor([3, 4])
    last = model.last_hidden(history, lengths)  # (2, D)
    with_mask = torch.tensor([[3, 7, 9, model.mask_token, 0], [4, 1, 2, 8, model.mask_token]])
    full = model(with_mask, lengths + 1)
    torch.testing.assert_close(last[0], full[0, 3])
    torch.testing.assert_close(last[1], full[1, 4])
    assert model.logits(last).shape == (2, 30)


# -- HSTU -----------------------------------------------------------------------------------------
def reference_hstu_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, n: float
) -> torch.Tensor:
    """Loops straight from the paper: ``out[t] = Σ_{s<=t} SiLU(q_t·k_s + rab[t, s]) / n · v_s``."""
    B, H, L, d = q.shape
    out = torch.zeros(B, H, L, d, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for t in range(L):
                for s in range(t + 1):
                    logit = float(q[b, h, t] @ k[b, h, s]) + float(bias[b, h, t, s])
                    weight = logit / (1.0 + np.exp(-logit)) / n
                    out[b, h, t] += weight * v[b, h, s].double()
    return out


def test_hstu_attention_matches_the_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, generator=gen) for _ in range(3))
    bias = torch.randn(2, 3, 6, 6, generator=gen)
    out = hstu_attention(q, k, v, bias, n=10.0)
    torch.testing.assert_close(out.double(), reference_hstu_attention(q, k, v, bias, 10.0))


def test_hstu_block_matches_the_reference() -> None:
    """The block: U, V, Q, K = split(SiLU(f1(LN x))); Y = f2(LN(A V) ⊙ U); x + Y."""
    model = small_hstu(n_heads=2)
    block = model.blocks[0]
    assert isinstance(block, HSTUBlock)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 16, generator=gen)
    stamps = torch.tensor([[0, 5, 60, 3600, 86400], [0, 1, 2, 3, 4]])
    t_idx = time_index(stamps, 2, 5, 32, torch.device("cpu"))
    with torch.no_grad():
        got = block(x, t_idx)
        u, v, q, k = F.silu(block.f1(block.ln_in(x))).split(16, dim=2)
        heads = [t.view(2, 5, 2, 8).transpose(1, 2) for t in (q, k, v)]
        rel = (torch.arange(5)[:, None] - torch.arange(5)[None, :]).clamp(0, 9)
        assert block.rab.position is not None and block.rab.time is not None
        bias = block.rab.position[rel].permute(2, 0, 1)[None] + block.rab.time[t_idx].permute(
            0, 3, 1, 2
        )
        a = reference_hstu_attention(*heads, bias, n=10.0).float()
        a = a.transpose(1, 2).reshape(2, 5, 16)
        expected = x + block.f2(block.ln_attn(a) * u)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_hstu_is_causal_in_items_and_times() -> None:
    model = small_hstu()
    tokens = torch.tensor([[3, 7, 9, 2, 11, 5]])
    stamps = torch.tensor([[0, 10, 20, 400, 5000, 90000]])
    lengths = torch.tensor([6])
    changed, later = tokens.clone(), stamps.clone()
    changed[0, 4] = 20
    later[0, 4:] += 10**6
    a = model(tokens, lengths, stamps)
    b = model(changed, lengths, later)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_hstu_ignores_padding_and_uses_times() -> None:
    model = small_hstu()
    tokens = torch.tensor([[4, 8, 15, 16, 23]])
    stamps = torch.tensor([[0, 60, 120, 7200, 7260]])
    out = model(tokens, torch.tensor([5]), stamps)
    padded = torch.tensor([[4, 8, 15, 16, 23, 0, 0], [1, 2, 0, 0, 0, 0, 0]])
    padded_stamps = torch.tensor([[0, 60, 120, 7200, 7260, 0, 0], [5, 9, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 2])
    torch.testing.assert_close(
        model(padded, lengths, padded_stamps)[0, :5], out[0], rtol=1e-5, atol=1e-6
    )
    last = model.last_hidden(padded, lengths, padded_stamps)
    torch.testing.assert_close(last[0], out[0, 4], rtol=1e-5, atol=1e-6)
    # time gaps change the output; unknown times (None or negative) are the same thing
    assert not torch.allclose(model(tokens, torch.tensor([5])), out)
    torch.testing.assert_close(
        model(tokens, torch.tensor([5])), model(tokens, torch.tensor([5]), -torch.ones(1, 5))
    )


def test_hstu_refuses_long_sequences_and_bad_heads() -> None:
    with pytest.raises(ValueError, match="max_len"):
        small_hstu()(torch.ones(1, 11, dtype=torch.long), torch.tensor([11]))
    with pytest.raises(ValueError, match="multiple"):
        HSTUBlock(10, 3, 0.0, 8, 4)
