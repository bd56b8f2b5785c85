"""Behaviour probabilities in the service: the loaded `BehaviourModel` and `predict`.

The behaviour model comes from ``ServiceSettings.behaviour_artifact`` or, when that is unset,
from the ``behaviour/`` subdirectory of the served recommendation artefact (a registry
version's directory included), and is reloaded with it. Candidates the model does not know are
skipped and listed in ``unknown_items``; history items it does not know are ignored.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recpilot.behaviour.models import MODEL_JSON, BehaviourModel
from recpilot.errors import RecPilotError

logger = logging.getLogger(__name__)

BEHAVIOUR_DIR = "behaviour"


class NoBehaviourModelError(RecPilotError, LookupError):
    """`predict` was called while no behaviour model is loaded."""


class BehaviourRequestError(RecPilotError, ValueError):
    """A predict request asks for something the behaviour model cannot answer."""


@dataclass(frozen=True)
class Prediction:
    """One candidate's probabilities, behaviour → p."""

    item_id: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Predictions:
    """What `RecService.predict` returns."""

    user_id: str | None
    model_version: str
    predictions: list[Prediction]
    unknown_items: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryItem:
    """One event of a history sent with a request (timestamp in ms, None: spaced before now)."""

    item_id: str
    event_type: str = "view"
    timestamp: int | None = None
    value: float | None = None


@dataclass(frozen=True)
class ServedBehaviour:
    model: BehaviourModel
    version: str
    path: Path


class BehaviourHolder:
    """The behaviour model being served (or none), swapped atomically on `load`.

    Args:
        explicit: ``ServiceSettings.behaviour_artifact``; None looks for ``behaviour/`` in
            the served artefact.
    """

    def __init__(self, explicit: Path | None = None) -> None:
        self.explicit = explicit
        self._served: ServedBehaviour | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> ServedBehaviour:
        served = self._served
        if served is None:
            where = (
                str(self.explicit)
                if self.explicit is not None
                else f"a {BEHAVIOUR_DIR}/ folder in the served artefact"
            )
            raise NoBehaviourModelError(
                f"no behaviour model is loaded, so /predict cannot answer: put one (from "
                f"`recpilot evaluate --task behaviour --output-dir DIR`, DIR/models/NAME) in "
                f"{where} or set behaviour_artifact in the service settings"
            )
        return served

    @property
    def loaded(self) -> bool:
        return self._served is not None

    def load(self, served_artifact: Path | None) -> ServedBehaviour | None:
        """Load the behaviour model for the served artefact; keeps none when there is none.

        Raises:
            ArtifactError: ``behaviour_artifact`` is set but cannot be read.
        """
        path = self.explicit
        if path is None:
            if (
                served_artifact is None
                or not (served_artifact / BEHAVIOUR_DIR / MODEL_JSON).is_file()
            ):
                with self._lock:
                    self._served = None
                logger.info("no behaviour model next to %s; /predict is off", served_artifact)
                return None
            path = served_artifact / BEHAVIOUR_DIR
        start = time.perf_counter()
        model = BehaviourModel.load(path)
        digest = hashlib.sha256((path / MODEL_JSON).read_bytes()).hexdigest()[:8]
        served = ServedBehaviour(model, f"{model.name}-{digest}", path)
        with self._lock:
            self._served = served
        logger.info(
            "loaded behaviour model %s (%s) from %s in %.2fs",
            served.version,
            ", ".join(model.behaviours),
            path,
            time.perf_counter() - start,
        )
        return served


def predict(
    served: ServedBehaviour,
    user_id: str | None,
    item_ids: Sequence[str],
    history: Sequence[HistoryItem],
    behaviours: Sequence[str] | None,
    now_ms: int,
) -> Predictions:
    """Probabilities of the candidates for one user in one batched model call.

    Raises:
        BehaviourRequestError: a requested behaviour is not one the model predicts.
    """
    model = served.model
    known_behaviours = model.behaviours
    wanted = list(behaviours) if behaviours else known_behaviours
    bad = [b for b in wanted if b not in known_behaviours]
    if bad:
        raise BehaviourRequestError(
            f"behaviours {bad} are not predicted by model {served.version}; "
            f"it predicts {known_behaviours}"
        )
    n = len(history)
    stamps = [
        h.timestamp if h.timestamp is not None else now_ms - (n - k) * 1000
        for k, h in enumerate(history)
    ]
    probs, known, unknown = model.predict_history(
        list(item_ids),
        history_items=[h.item_id for h in history],
        history_event_types=[h.event_type for h in history],
        history_values=[h.value for h in history],
        history_timestamps=stamps,
        user_id=user_id,
        timestamp=now_ms,
    )
    predictions = [
        Prediction(str(item), {b: float(probs[b][j]) for b in wanted})
        for j, item in enumerate(known)
    ]
    if unknown:
        logger.warning(
            "predict: %d candidate items unknown to behaviour model %s, skipped",
            len(unknown),
            served.version,
        )
    return Predictions(user_id, served.version, predictions, [str(u) for u in unknown])
