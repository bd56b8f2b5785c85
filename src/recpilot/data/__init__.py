"""Event schema, readers, preprocessing, vocabularies, splits and the synthetic simulator."""

from recpilot.data.interactions import Interactions
from recpilot.data.vocab import Vocabulary

__all__ = ["Interactions", "Vocabulary"]
