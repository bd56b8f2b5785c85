"""Model classes by config type (a discriminated union picks the config, this picks the class)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from recpilot.config import ModelConfig
from recpilot.errors import ConfigError
from recpilot.models.base import Recommender

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)


def baseline_classes() -> dict[str, type[Recommender]]:
    """The fast, non-neural baselines by name (what ``--model all`` and the demo compare)."""
    from recpilot.models.als import ALSRecommender
    from recpilot.models.ease import EASERecommender
    from recpilot.models.itemknn import ItemKNNRecommender
    from recpilot.models.popularity import PopularityRecommender

    classes: list[type[Recommender]] = [
        PopularityRecommender,
        ItemKNNRecommender,
        EASERecommender,
        ALSRecommender,
    ]
    return {cls.name: cls for cls in classes}


def model_classes() -> dict[str, type[Recommender]]:
    """Every registered recommender by name: the baselines, then the sequence models."""
    from recpilot.content.recommender import TextKNNRecommender
    from recpilot.models.sequential import (
        BERT4RecRecommender,
        HSTURecommender,
        SASRecRecommender,
    )

    classes: list[type[Recommender]] = [
        SASRecRecommender,
        BERT4RecRecommender,
        HSTURecommender,
        TextKNNRecommender,
    ]
    return {**baseline_classes(), **{cls.name: cls for cls in classes}}


def model_names(include_neural: bool = False) -> list[str]:
    """Registered model names; by default the baselines only.

    Neural models train for minutes to hours, so collections of "every model" (``--model
    all``, the demo) name them explicitly rather than by default.
    """
    return list(model_classes() if include_neural else baseline_classes())


def model_from_config(config: BaseModel | dict[str, Any]) -> Recommender:
    """Build an unfitted recommender from a config object or a dict with a ``name`` key."""
    if isinstance(config, dict):
        try:
            config = _ADAPTER.validate_python(config)
        except Exception as exc:
            raise ConfigError(
                f"invalid model config {config!r}; known models: "
                f"{', '.join(model_names(include_neural=True))}\n{exc}"
            ) from exc
    assert isinstance(config, BaseModel)
    name = getattr(config, "name", None)
    classes = model_classes()
    if name not in classes:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(classes)}")
    return classes[name](config)
