"""Neural building blocks of the sequence models (torch only: no pandas, polars or FastAPI).

- `embeddings`: item table with padding (token = item index + 1), learned positions, event
  types, log buckets of time gaps.
- `blocks`: pre-LayerNorm Transformer blocks on `F.scaled_dot_product_attention`.
- `sasrec`: the SASRec module (causal).
- `bert4rec`: the BERT4Rec module (bidirectional, masked-item training with a ``[MASK]`` token).
- `hstu`: the HSTU-style module (pointwise SiLU attention with relative position/time bias).
- `losses`: full softmax, sampled softmax with log-Q correction, gBCE; negative samplers.
"""

from recpilot.models.nn.bert4rec import BERT4Rec, BERT4RecModuleConfig, mask_positions
from recpilot.models.nn.blocks import Dropout, FeedForward, SelfAttention, TransformerBlock
from recpilot.models.nn.embeddings import (
    PAD,
    EventTypeEmbedding,
    ItemEmbedding,
    PositionEmbedding,
    time_gap_buckets,
)
from recpilot.models.nn.hstu import HSTU, HSTUBlock, HSTUModuleConfig, hstu_attention
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
    "HSTU",
    "PAD",
    "BERT4Rec",
    "BERT4RecModuleConfig",
    "Dropout",
    "EventTypeEmbedding",
    "FeedForward",
    "FullSoftmaxLoss",
    "GBCELoss",
    "HSTUBlock",
    "HSTUModuleConfig",
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
    "hstu_attention",
    "mask_positions",
    "time_gap_buckets",
]
