"""Recommenders: baselines and (later) Transformer models behind one contract."""

from recpilot.models.base import Query, Recommender, top_k

__all__ = ["Query", "Recommender", "top_k"]
