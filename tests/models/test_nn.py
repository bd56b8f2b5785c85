"""The nn building blocks: embeddings, attention blocks, SASRec module, losses and samplers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recpilot.models.nn import (
    PAD,
    FullSoftmaxLoss,
    GBCELoss,
    InBatchSampler,
    ItemEmbedding,
    SampledSoftmaxLoss,
    SASRec,
    SASRecModuleConfig,
    SelfAttention,
    TransformerBlock,
    UniformSampler,
    gbce_beta,
)
from recpilot.models.nn.embeddings import item_tokens, positions_from_end, positions_from_start


def small_sasrec(**changes: object) -> SASRec:
    torch.manual_seed(0)
    cfg = {"n_items": 30, "max_len": 12, "d_model": 16, "n_layers": 2, "n_heads": 2}
    return SASRec(SASRecModuleConfig(**{**cfg, **changes})).eval()  # type: ignore[arg-type]


# -- embeddings -----------------------------------------------------------------------------------
def test_item_tokens_and_positions() -> None:
    assert item_tokens(torch.tensor([0, 4, -1])).tolist() == [1, 5, PAD]
    lengths = torch.tensor([3, 1])
    assert positions_from_end(lengths, 4).tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]
    assert positions_from_start(lengths, 3).tolist() == [[0, 1, 2], [0, 1, 2]]


def test_padding_row_is_zero_and_gets_no_gradient() -> None:
    emb = ItemEmbedding(5, 4)
    assert emb.table.weight.shape == (6, 4)
    out = emb(torch.tensor([[0, 3, 0]]))
    assert (out[0, 0] == 0).all() and (out[0, 2] == 0).all()
    out.sum().backward()
    assert emb.table.weight.grad is not None
    assert (emb.table.weight.grad[PAD] == 0).all()
    h = torch.randn(2, 4)
    torch.testing.assert_close(emb.logits(h), h @ emb.table.weight[1:].T)


# -- attention ------------------------------------------------------------------------------------
def reference_attention(
    attn: SelfAttention, x: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Plain softmax attention with an explicit ``(L, L)`` or ``(B, 1, L, L)`` mask."""
    B, L, D = x.shape
    H = attn.n_heads
    q, k, v = attn.qkv(x).split(D, dim=2)
    q, k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (q, k, v))
    w = (q @ k.transpose(-1, -2)) / math.sqrt(D // H)
    w = w.masked_fill(~allowed, -torch.inf).softmax(-1)
    return attn.proj((w @ v).transpose(1, 2).reshape(B, L, D))


def test_causal_attention_matches_reference() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(16, 4, dropout=0.0, causal=True).eval()
    x = torch.randn(3, 7, 16)
    allowed = torch.ones(7, 7, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x), reference_attention(attn, x, allowed))


def test_bidirectional_attention_with_key_padding_mask() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, dropout=0.0, causal=False).eval()
    x = torch.randn(2, 5, 8)
    keys = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    mask = keys[:, None, None, :]  # (B, 1, 1, L)
    out = attn(x, mask)
    torch.testing.assert_close(out, reference_attention(attn, x, mask))
    # what sits in masked key slots does not matter
    x2 = x.clone()
    x2[0, 3:] = torch.randn(2, 8)
    torch.testing.assert_close(attn(x2, mask)[0, :3], out[0, :3])
    # causal plus a mask combines both
    causal = SelfAttention(8, 2, dropout=0.0, causal=True).eval()
    both = mask & torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(causal(x, mask), reference_attention(causal, x, both))


def test_block_is_pre_layer_norm_residual() -> None:
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 32, dropout=0.0).eval()
    x = torch.randn(2, 4, 8)
    h = x + block.attn(block.ln_attn(x))
    torch.testing.assert_close(block(x), h + block.ffn(block.ln_ffn(h)))


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(ValueError, match="multiple"):
        SelfAttention(10, 3, dropout=0.0, causal=True)


# -- SASRec module --------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", ["from_end", "from_start"])
def test_sasrec_is_causal(positions: str) -> None:
    """Changing a later item leaves every earlier output unchanged."""
    model = small_sasrec(positions=positions)
    tokens = torch.tensor([[3, 7, 9, 2, 11, 5]])
    changed = tokens.clone()
    changed[0, 4] = 20
    lengths = torch.tensor([6])
    a, b = model(tokens, lengths), model(changed, lengths)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_sasrec_ignores_right_padding() -> None:
    model = small_sasrec()
    tokens = torch.tensor([[4, 8, 15, 16, 23]])
    padded = torch.tensor([[4, 8, 15, 16, 23, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0]])
    out = model(tokens, torch.tensor([5]))
    out_padded = model(padded, torch.tensor([5, 2]))
    torch.testing.assert_close(out_padded[0, :5], out[0], rtol=1e-5, atol=1e-6)
    last = model.last_hidden(padded, torch.tensor([5, 2]))
    torch.testing.assert_close(last[0], out[0, 4], rtol=1e-5, atol=1e-6)


def test_sasrec_head_is_tied_and_shapes() -> None:
    model = small_sasrec()
    names = [n for n, _ in model.named_parameters()]
    assert not any("head" in n or "lm" in n for n in names)
    h = model(torch.tensor([[1, 2, 3]]), torch.tensor([3]))
    assert h.shape == (1, 3, 16)
    logits = model.logits(h)
    assert logits.shape == (1, 3, 30)
    torch.testing.assert_close(logits, h @ model.items.table.weight[1:].T)


def test_sasrec_refuses_sequences_longer_than_max_len() -> None:
    model = small_sasrec(max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 5, dtype=torch.long), torch.tensor([5]))


# -- losses ---------------------------------------------------------------------------------------
def loss_inputs(n: int = 11, d: int = 8, n_items: int = 17):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(n_items, d, generator=g)
    targets = torch.randint(n_items, (n,), generator=g)
    return hidden, targets, weight


def test_full_softmax_equals_cross_entropy() -> None:
    hidden, targets, weight = loss_inputs()
    expected = F.cross_entropy(hidden @ weight.T, targets)
    torch.testing.assert_close(FullSoftmaxLoss()(hidden, targets, weight), expected)


def test_sampled_softmax_with_every_item_is_the_full_softmax() -> None:
    hidden, targets, weight = loss_inputs()
    n_items = weight.shape[0]
    loss = SampledSoftmaxLoss(n_items, UniformSampler(n_items))
    full = FullSoftmaxLoss()(hidden, targets, weight)
    every = loss(hidden, targets, weight, negatives=torch.arange(n_items))
    torch.testing.assert_close(every, full)
    # uniform log-Q is one constant: it cancels
    log_q = torch.full((n_items,), -1.7)
    torch.testing.assert_close(loss(hidden, targets, weight, torch.arange(n_items), log_q), full)


def test_sampled_softmax_log_q_correction() -> None:
    hidden, targets, weight = loss_inputs(n=5)
    negatives = torch.tensor([0, 3, 3, 9])
    log_q = torch.linspace(-3, 0, weight.shape[0])
    got = SampledSoftmaxLoss(4, UniformSampler(17))(hidden, targets, weight, negatives, log_q)
    rows = []
    for i in range(5):
        t = int(targets[i])
        pos = hidden[i] @ weight[t] - log_q[t]
        negs = [hidden[i] @ weight[j] - log_q[j] for j in negatives.tolist() if j != t]
        rows.append(-(pos - torch.logsumexp(torch.stack([pos, *negs]), 0)))
    torch.testing.assert_close(got, torch.stack(rows).mean())


def test_sampled_softmax_samples_when_not_given_negatives() -> None:
    hidden, targets, weight = loss_inputs()
    torch.manual_seed(0)
    value = SampledSoftmaxLoss(8, UniformSampler(17))(hidden, targets, weight)
    assert value.ndim == 0 and torch.isfinite(value)


def test_gbce_beta() -> None:
    assert gbce_beta(10, 101, 0.0) == pytest.approx(1.0)
    assert gbce_beta(10, 101, 1.0) == pytest.approx(0.1)
    alpha = 10 / 100
    assert gbce_beta(10, 101, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha))


@pytest.mark.parametrize("t", [0.0, 0.75])
def test_gbce_matches_its_formula(t: float) -> None:
    hidden, targets, weight = loss_inputs(n=3, d=4, n_items=6)
    negatives = torch.tensor([1, 4])
    beta = gbce_beta(2, 6, t)
    got = GBCELoss(6, 2, t)(hidden, targets, weight, negatives)
    rows = []
    for i in range(3):
        t_i = int(targets[i])
        s_pos = hidden[i] @ weight[t_i]
        term = -beta * torch.log(torch.sigmoid(s_pos))
        for j in negatives.tolist():
            if j != t_i:
                term = term - torch.log(1 - torch.sigmoid(hidden[i] @ weight[j]))
        rows.append(term / 3)
    torch.testing.assert_close(got, torch.stack(rows).mean())
    if t == 0.0:  # plain binary cross-entropy over the 1 + K logits
        bce = []
        for i in range(3):
            t_i = int(targets[i])
            logits = hidden[i] @ weight[torch.tensor([t_i, 1, 4])].T
            labels = torch.tensor([1.0, 0.0, 0.0])
            keep = torch.tensor([True, t_i != 1, t_i != 4])
            bce.append(
                F.binary_cross_entropy_with_logits(logits, labels, reduction="none")[keep].sum() / 3
            )
        torch.testing.assert_close(got, torch.stack(bce).mean())


def test_losses_backpropagate_to_hidden_and_items() -> None:
    hidden, targets, weight = loss_inputs()
    for loss in (
        FullSoftmaxLoss(),
        SampledSoftmaxLoss(5, UniformSampler(17)),
        GBCELoss(17, 5, 0.5),
    ):
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        loss(h, targets, w).backward()
        assert h.grad is not None and w.grad is not None
        assert h.grad.abs().sum() > 0 and w.grad.abs().sum() > 0


# -- samplers -------------------------------------------------------------------------------------
def test_uniform_sampler() -> None:
    torch.manual_seed(0)
    negatives, log_q = UniformSampler(50)(torch.tensor([1, 2]), 1000)
    assert negatives.shape == (1000,) and negatives.min() >= 0 and negatives.max() < 50
    assert len(negatives.unique()) == 50
    torch.testing.assert_close(log_q, torch.full((50,), math.log(1000 / 50)))


def test_in_batch_sampler_draws_batch_targets_with_frequency_log_q() -> None:
    counts = torch.tensor([10, 0, 30, 60])
    sampler = InBatchSampler(counts)
    targets = torch.tensor([0, 2, 2, 3])
    torch.manual_seed(0)
    negatives, log_q = sampler(targets, 8)
    assert set(negatives.tolist()) <= {0, 2, 3}
    p = (counts + 1.0) / (counts + 1.0).sum()
    torch.testing.assert_close(log_q, (p * 8).log())


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_chunked_cross_entropy_equals_the_reference_with_gradients(chunk_size: int) -> None:
    hidden, targets, weight = loss_inputs(n=9)
    h1, w1 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    got = FullSoftmaxLoss(chunk_size)(h1, targets, w1)
    expected = F.cross_entropy(h2 @ w2.T, targets)
    torch.testing.assert_close(got, expected)
    (2.0 * got).backward()
    (2.0 * expected).backward()
    torch.testing.assert_close(h1.grad, h2.grad)
    torch.testing.assert_close(w1.grad, w2.grad)


def test_chunked_cross_entropy_under_bf16_autocast_is_close() -> None:
    hidden, targets, weight = loss_inputs(n=64, d=16, n_items=50)
    h1, w1 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = FullSoftmaxLoss(16)(h1, targets, w1)
    got.backward()
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    F.cross_entropy(h2 @ w2.T, targets).backward()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(F.cross_entropy(hidden @ weight.T, targets).item(), rel=0.02)
    assert h1.grad is not None and h1.grad.dtype == torch.float32
    torch.testing.assert_close(h1.grad, h2.grad, rtol=0.05, atol=0.01)


def test_chunked_cross_entropy_with_vanishing_target_probability() -> None:
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    weight = torch.tensor([[200.0, 0.0], [0.0, 1.0], [-150.0, 0.0]], requires_grad=True)
    targets = torch.tensor([2, 1])  # row 0: p(target) = exp(-350), far below float32's range
    got = FullSoftmaxLoss(1)(hidden, targets, weight)
    expected = F.cross_entropy(hidden.detach() @ weight.detach().T, targets)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, expected)


def test_fast_dropout() -> None:
    from recpilot.models.nn import Dropout

    drop = Dropout(0.25)
    x = torch.ones(200, 500, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, y.detach())  # the gradient is the same scaled mask
    torch.manual_seed(0)
    torch.testing.assert_close(drop(x), y)  # seeded: the same mask
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_last_hidden_fast_path_equals_the_full_pass(n_layers: int) -> None:
    model = small_sasrec(n_layers=n_layers)
    tokens = torch.tensor([[4, 8, 15, 16, 23, 29], [1, 2, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([6, 2, 1])
    full = model(tokens, lengths)[torch.arange(3), lengths - 1]
    torch.testing.assert_close(model.last_hidden(tokens, lengths), full, rtol=1e-5, atol=1e-5)
