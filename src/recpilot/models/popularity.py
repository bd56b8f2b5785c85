"""Most-popular items: the floor every personalised model must beat.

Also home of `popularity_prior`, the tiny popularity term the other baselines add to their
scores so that rows with no signal (an empty history) and ties fall back to popularity.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from recpilot.config import PopularityConfig
from recpilot.data.interactions import Interactions
from recpilot.errors import ArtifactError
from recpilot.models.base import Query, Recommender
from recpilot.types import FloatArray

logger = logging.getLogger(__name__)

#: Scale of the popularity prior added by the personalised baselines. Small enough never to
#: reorder items whose model scores differ by more than ~1e-6 (float32 still resolves it on
#: scores of order 1), large enough to order items whose model scores tie (often at 0).
PRIOR_SCALE = 1e-6


def item_popularity(data: Interactions, weighted: bool = False) -> FloatArray:
    """Events (or summed event weights) per item.

    Args:
        data: training events.
        weighted: sum ``data.weight`` instead of counting events.

    Returns:
        ``(I,)`` float32.
    """
    if weighted:
        counts = np.bincount(data.item_idx, weights=data.weight, minlength=data.n_items)
    else:
        counts = data.item_counts()
    return counts.astype(np.float32)


def popularity_prior(data: Interactions) -> FloatArray:
    """Event counts scaled into ``[0, PRIOR_SCALE]``, ``(I,)`` float32.

    Added to every score row of item-kNN, EASE and ALS: an empty history then ranks items by
    popularity instead of by index, and items the model scores equally are ordered by
    popularity.
    """
    counts = data.item_counts().astype(np.float64)
    top = counts.max() if len(counts) else 0.0
    return (PRIOR_SCALE * counts / max(top, 1.0)).astype(np.float32)


def check_state(
    model: Recommender,
    state: dict[str, np.ndarray],
    shapes: dict[str, tuple[int | None, ...]],
) -> None:
    """Raise `ArtifactError` when a loaded state lacks an array or has a wrong shape.

    Args:
        model: the model being loaded (named in messages).
        state: arrays read from the weights file.
        shapes: expected shape per array name; ``None`` matches any size on that axis.
    """
    missing = [n for n in shapes if n not in state]
    if missing:
        raise ArtifactError(
            f"{type(model).__name__}: the weights file lacks {', '.join(missing)}; "
            f"it holds {', '.join(sorted(state)) or 'nothing'}"
        )
    for name, shape in shapes.items():
        got = state[name].shape
        if len(got) != len(shape) or any(
            e is not None and e != g for e, g in zip(shape, got, strict=True)
        ):
            raise ArtifactError(
                f"{type(model).__name__}: weights array {name!r} has shape {got}, "
                f"expected {tuple('*' if e is None else e for e in shape)}"
            )


class PopularityRecommender(Recommender):
    """Scores every item by its number of training events (or summed weights).

    Every query row gets the same scores; the history only matters through
    ``exclude_seen``. Items with equal counts come out in the order `torch.topk` returns them,
    which is deterministic for the same scores.

    Example:
        >>> model = PopularityRecommender().fit(train)  # doctest: +SKIP
        >>> ids, scores = model.recommend(Query.from_histories([[3, 4]]), k=10)  # doctest: +SKIP
    """

    name: ClassVar[str] = "popularity"
    config_class = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None, **options: object) -> None:
        super().__init__(config, **options)
        self.popularity_: FloatArray | None = None

    def _fit(self, data: Interactions) -> None:
        self.popularity_ = item_popularity(data, self.config.weighted)
        logger.debug("popularity: %d items, top count %.1f", data.n_items, self.popularity_.max())

    def _score(self, query: Query) -> FloatArray:
        assert self.popularity_ is not None
        # a real (B, I) array, not a broadcast view: callers may write into it
        return np.tile(self.popularity_, (len(query), 1))

    def _state(self) -> dict[str, np.ndarray]:
        assert self.popularity_ is not None
        return {"popularity": self.popularity_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        check_state(self, state, {"popularity": (self.n_items,)})
        self.popularity_ = np.asarray(state["popularity"], dtype=np.float32)
