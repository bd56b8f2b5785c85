"""Item content for cold start: text encoders, the embedding cache, item text, text-only kNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recpilot.content.encoder import (
    EmbeddingCache,
    HashingEncoder,
    ItemEncoder,
    MiniLMEncoder,
    encode_texts,
    encoder_from_id,
    minilm_path,
)
from recpilot.content.text import item_text, item_texts
from recpilot.data.interactions import Interactions
from recpilot.types import FloatArray


def catalogue_vectors(
    data: Interactions, encoder: ItemEncoder, cache_dir: str | Path | None = None
) -> FloatArray:
    """``(I, T)`` text vectors of ``data``'s items in vocabulary order (zero rows: no text)."""
    texts = item_texts(data.item_table, data.items.ids.to_list())
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return encode_texts(encoder, texts, cache_dir)


__all__ = [
    "EmbeddingCache",
    "HashingEncoder",
    "ItemEncoder",
    "MiniLMEncoder",
    "catalogue_vectors",
    "encode_texts",
    "encoder_from_id",
    "item_text",
    "item_texts",
    "minilm_path",
]
