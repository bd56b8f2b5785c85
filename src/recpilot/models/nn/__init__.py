"""Neural building blocks of the sequence models (torch only: no pandas, polars or FastAPI).

- `embeddings`: item table with padding (token = item index + 1), learned positions.
- `blocks`: pre-LayerNorm Transformer blocks on `F.scaled_dot_product_attention`.
- `sasrec`: the SASRec module.
- `losses`: full softmax, sampled softmax with log-Q correction, gBCE; negative samplers.
"""

from recpilot.models.nn.blocks import Dropout, FeedForward, SelfAttention, TransformerBlock
from recpilot.models.nn.embeddings import PAD, ItemEmbedding, PositionEmbedding
from recpilot.models.nn.losses import (
    FullSoftmaxLoss,
    GBCELoss,
    InBatchSampler,
    NegativeSampler,
    SampledSoftmaxLoss,
    UniformSampler,
    gbce_beta,
)
from recpilot.models.nn.sasrec import SASRec, SASRecModuleConfig

__all__ = [
    "PAD",
    "Dropout",
    "FeedForward",
    "FullSoftmaxLoss",
    "GBCELoss",
    "InBatchSampler",
    "ItemEmbedding",
    "NegativeSampler",
    "PositionEmbedding",
    "SASRec",
    "SASRecModuleConfig",
    "SampledSoftmaxLoss",
    "SelfAttention",
    "TransformerBlock",
    "UniformSampler",
    "gbce_beta",
]
