"""Next-item losses and negative samplers, shared by every sequence model.

Every loss takes the hidden states of the positions that have a target (padding removed
before the call, so the output layer runs only where it matters), the target items and the
output item vectors::

    loss = loss_fn(hidden (N, D), targets (N,), item_weight (I, D))  # scalar

- `FullSoftmaxLoss`: cross-entropy over the whole catalogue (SASRec+, Klenitskiy & Vasilev,
  RecSys 2023). Best while ``N × I`` logits fit comfortably in memory.
- `SampledSoftmaxLoss`: softmax over the target and ``K`` shared negatives with log-Q
  correction (Jean et al. 2015; Yi et al. 2019) and accidental hits removed.
- `GBCELoss`: generalised binary cross-entropy (gSASRec, Petrov & Macdonald, RecSys 2023),
  which calibrates the positive term with ``β`` to undo the overconfidence negative sampling
  causes.

Samplers draw from torch's global generator, so a trainer that seeds (and checkpoints) it
makes sampling reproducible.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn


class NegativeSampler(Protocol):
    """Draws ``K`` negatives shared by a batch, with their log expected counts."""

    def __call__(self, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample.

        Args:
            targets: ``(N,)`` the batch's target items.
            k: negatives to draw.

        Returns:
            ``(negatives (K,), log_q (I,))``: item indices, and the log expected number of
            times each item is drawn in one call (the log-Q correction of any item).
        """
        ...


class UniformSampler:
    """``K`` items uniformly at random, with replacement.

    Args:
        n_items: catalogue size ``I``.
    """

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def __call__(self, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        negatives = torch.randint(self.n_items, (k,), device=targets.device)
        log_q = torch.full((self.n_items,), math.log(k / self.n_items), device=targets.device)
        return negatives, log_q


class InBatchSampler:
    """``K`` of the batch's own targets (popular items come up more often).

    The chance of drawing item ``j`` is taken as its share ``p_j`` of training events, so
    its log-Q correction is ``log(K · p_j)``.

    Args:
        item_counts: ``(I,)`` training events per item.
    """

    def __init__(self, item_counts: torch.Tensor) -> None:
        counts = item_counts.to(torch.float64) + 1.0  # unseen items: never drawn, finite log
        self.log_p = (counts / counts.sum()).log().to(torch.float32)  # (I,)

    def __call__(self, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(targets), (k,), device=targets.device)
        return targets[pick], self.log_p.to(targets.device) + math.log(k)


#: bf16 chunks are padded to a multiple of this many rows (few distinct shapes, see below)
BF16_ROWS = 128


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy whose gradients are computed chunk by chunk in the forward.

    Each chunk of rows makes its ``(n, I)`` logits and softmax and multiplies
    ``softmax − onehot`` straight into the gradients of ``hidden`` and of the item vectors, so
    the ``(N, I)`` logits are never stored and each chunk stays in cache between the passes.
    The backward only scales the stored gradients.

    In bf16 the logits, the softmax (computed in fp32 inside the kernel) and the two gradient
    products are bf16, while the one-hot part of the gradient is applied exactly in fp32.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
        bf16: bool,
    ) -> torch.Tensor:
        n = hidden.shape[0]
        h32 = hidden.detach().float()  # (N, D)
        w32 = weight.detach().float()  # (I, D)
        h_all = h32.bfloat16() if bf16 else h32
        w = w32.bfloat16() if bf16 else w32
        dev = hidden.device
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=dev)  # (N, D)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=dev)  # (I, D)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for lo in range(0, n, chunk_size):
            h = h_all[lo : lo + chunk_size]  # (n, D)
            t = targets[lo : lo + chunk_size]  # (n,)
            rows = torch.arange(len(t), device=dev)
            if bf16 and len(t) % BF16_ROWS:
                # zero rows up to a multiple of BF16_ROWS: oneDNN caches one bf16 kernel per
                # matrix shape, and a new row count every batch (the last chunk) grew the
                # process by ~1 GB over a long run; zero rows add nothing to grad_w below
                h = F.pad(h, (0, 0, 0, BF16_ROWS - len(t) % BF16_ROWS))  # (n', D)
            logits = h @ w.T  # (n, I)
            prob = torch.softmax(logits, dim=1)  # (n, I); one fused pass, one exp per entry
            p_target = prob[rows, t].float()  # (n,)
            log_p = p_target.log()  # (n,)
            tiny = p_target < 1e-30  # underflow: log p from the log-sum-exp there instead
            if tiny.any():
                lt = logits[: len(t)][tiny].float()
                log_p[tiny] = lt.gather(1, t[tiny, None]).squeeze(1) - torch.logsumexp(lt, dim=1)
            total -= log_p.sum(dtype=torch.float64)
            if bf16:
                # d loss_i / d logits_i = prob_i − onehot(t_i); the one-hot part in fp32
                grad_h[lo : lo + chunk_size] = (prob @ w)[: len(t)].float() - w32[t]  # (n, D)
                grad_w += (prob.T @ h).float()  # (I, D)
                grad_w.index_add_(0, t, h32[lo : lo + chunk_size], alpha=-1.0)
            else:
                prob[rows, t] -= 1.0  # (n, I) = d loss_i / d logits_i
                torch.mm(prob, w, out=grad_h[lo : lo + chunk_size])  # (n, D)
                grad_w.addmm_(prob.T, h)  # (I, D)
            del logits, prob  # before the next chunk's: one (n, I) pair alive at a time
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return (total / max(n, 1)).to(torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / max(ctx.n, 1)
        h_dtype, w_dtype = ctx.dtypes
        return (grad_h * scale).to(h_dtype), (grad_w * scale).to(w_dtype), None, None, None


def chunked_softmax_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 1024,
    bf16: bool | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``targets`` under ``softmax(hidden @ weightᵀ)``, memory-light.

    Equal to ``F.cross_entropy(hidden @ weight.T, targets)`` (with its gradients) without
    storing the ``(N, I)`` logits. The softmax is always computed in fp32.

    Args:
        hidden: ``(N, D)``.
        weight: ``(I, D)``.
        targets: ``(N,)`` indices into ``weight``.
        chunk_size: rows per chunk.
        bf16: run the three ``N × I`` matrix products in bf16 (None: when CPU bf16 autocast
            is on).

    Returns:
        scalar.
    """
    kind = hidden.device.type
    if bf16 is None:
        bf16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
    with torch.autocast(kind, enabled=False):
        out = _ChunkedSoftmaxCrossEntropy.apply(hidden, weight, targets, chunk_size, bf16)
    return out


class FullSoftmaxLoss(nn.Module):
    """Mean cross-entropy of the targets under a softmax over all ``I`` items.

    Args:
        chunk_size: with gradients, rows per chunk of `chunked_softmax_cross_entropy`;
            None: the plain ``F.cross_entropy`` on the full ``(N, I)`` logits.
        bf16: the catalogue-sized matrix products in bf16 while training, whatever the
            rest of the model uses (None: follow CPU autocast).
    """

    def __init__(self, chunk_size: int | None = 1024, bf16: bool | None = None) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        self.bf16 = bf16

    def forward(
        self, hidden: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor
    ) -> torch.Tensor:
        """Loss.

        Args:
            hidden: ``(N, D)`` hidden states of positions with a target.
            targets: ``(N,)`` item indices.
            item_weight: ``(I, D)`` output item vectors.

        Returns:
            scalar, the mean over the ``N`` positions.
        """
        needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or item_weight.requires_grad)
        if self.chunk_size is not None and needs_grad:
            return chunked_softmax_cross_entropy(
                hidden, item_weight, targets, self.chunk_size, self.bf16
            )
        logits = hidden @ item_weight.T  # (N, I); bf16 under autocast
        return F.cross_entropy(logits.float(), targets)


class SampledSoftmaxLoss(nn.Module):
    """Softmax over the target and ``K`` shared negatives, log-Q corrected.

    Logits of every candidate ``j`` become ``s_j − log Q(j)``; a negative equal to the row's
    target (an accidental hit) is removed. With every item as a negative and a uniform
    ``Q`` this is exactly the full softmax.

    Args:
        n_negatives: ``K``.
        sampler: where negatives come from (see `UniformSampler`, `InBatchSampler`).
    """

    def __init__(self, n_negatives: int, sampler: NegativeSampler) -> None:
        super().__init__()
        self.n_negatives = n_negatives
        self.sampler = sampler

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        item_weight: torch.Tensor,
        negatives: torch.Tensor | None = None,
        log_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss.

        Args:
            hidden: ``(N, D)`` hidden states of positions with a target.
            targets: ``(N,)`` item indices.
            item_weight: ``(I, D)`` output item vectors.
            negatives: ``(K,)`` negatives to use instead of sampling (tests, evaluation).
            log_q: ``(I,)`` log-Q of every item when ``negatives`` is given (default 0).

        Returns:
            scalar, the mean over the ``N`` positions.
        """
        if negatives is None:
            negatives, log_q = self.sampler(targets, self.n_negatives)
        if log_q is None:
            log_q = torch.zeros(item_weight.shape[0], device=hidden.device)
        pos = (hidden * item_weight[targets]).sum(-1).float() - log_q[targets]  # (N,)
        neg = (hidden @ item_weight[negatives].T).float() - log_q[negatives]  # (N, K)
        neg = neg.masked_fill(negatives[None, :] == targets[:, None], -torch.inf)
        logits = torch.cat([pos[:, None], neg], dim=1)  # (N, 1 + K), the target in column 0
        return -(pos - torch.logsumexp(logits, dim=1)).mean()


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's calibration exponent ``β = α (t (1 − 1/α) + 1/α)``, ``α = K / (I − 1)``.

    ``t = 0`` gives ``β = 1`` (plain BCE); ``t = 1`` gives ``β = α``.
    """
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


class GBCELoss(nn.Module):
    """Generalised binary cross-entropy with ``K`` uniform negatives shared by the batch.

    Per position: ``−β log σ(s⁺) − Σ_j log(1 − σ(s⁻_j))``, divided by ``1 + K`` as in the
    reference implementation (a mean over the ``1 + K`` logits), then averaged over positions.
    Negatives equal to the position's target are left out.

    Args:
        n_items: catalogue size ``I``.
        n_negatives: ``K``.
        t: calibration in ``[0, 1]`` (0: BCE).
        sampler: negative sampler (default uniform).
    """

    def __init__(
        self, n_items: int, n_negatives: int, t: float, sampler: NegativeSampler | None = None
    ) -> None:
        super().__init__()
        self.n_negatives = n_negatives
        self.beta = gbce_beta(n_negatives, n_items, t)
        self.sampler = sampler if sampler is not None else UniformSampler(n_items)

    def forward(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        item_weight: torch.Tensor,
        negatives: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss.

        Args:
            hidden: ``(N, D)`` hidden states of positions with a target.
            targets: ``(N,)`` item indices.
            item_weight: ``(I, D)`` output item vectors.
            negatives: ``(K,)`` negatives to use instead of sampling.

        Returns:
            scalar.
        """
        if negatives is None:
            negatives, _ = self.sampler(targets, self.n_negatives)
        pos = (hidden * item_weight[targets]).sum(-1).float()  # (N,)
        neg = (hidden @ item_weight[negatives].T).float()  # (N, K)
        keep = negatives[None, :] != targets[:, None]  # (N, K)
        pos_term = -self.beta * F.logsigmoid(pos)  # (N,)
        neg_term = -(F.logsigmoid(-neg) * keep).sum(1)  # (N,)
        return ((pos_term + neg_term) / (1 + len(negatives))).mean()
