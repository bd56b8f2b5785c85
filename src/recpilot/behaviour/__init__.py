"""Behaviour probabilities: how likely a user clicks, carts, buys or likes a given item.

- `dataset`: labelled examples from impressions, ratings or sampled negatives; time split;
  the negative-sampling prior correction.
- `features`: engineered features computed from the past only.
- `models`: `BehaviourModel` with logistic regression, LightGBM and the Behaviour Sequence
  Transformer (BST) behind it.
- `calibration`: Platt / isotonic on the validation period.
- `report`: metrics, bootstrap intervals, ROC / PR / reliability plots, HTML.
- `task`: the whole evaluation (`recpilot evaluate --task behaviour`).
"""

from recpilot.behaviour.dataset import BehaviourDataset, build_dataset, prior_correction
from recpilot.behaviour.models import (
    BehaviourModel,
    BSTBehaviourModel,
    LightGBMBehaviourModel,
    LogisticBehaviourModel,
    behaviour_model,
)

__all__ = [
    "BSTBehaviourModel",
    "BehaviourDataset",
    "BehaviourModel",
    "LightGBMBehaviourModel",
    "LogisticBehaviourModel",
    "behaviour_model",
    "build_dataset",
    "prior_correction",
]
