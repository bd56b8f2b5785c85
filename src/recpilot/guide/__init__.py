"""Guidance: re-ranking between the model's scores and the served list.

- `recpilot.guide.stages`: filters, boosts, promotion, MMR, calibration, exploration.
- `recpilot.guide.policy`: named policies from YAML, the `Pipeline`, the hot-reloading registry.
- `recpilot.guide.steering`: steer toward a target set with one strength parameter.
- `recpilot.guide.similarity`: item similarity providers (embeddings, item-item matrices).
- `recpilot.guide.ope`: off-policy evaluation (IPS, SNIPS) from logged propensities.
- `recpilot.guide.simulate`: the closed loop on the synthetic simulator.
"""

from recpilot.guide.policy import (
    GuidedList,
    Pipeline,
    PolicyConfig,
    PolicyRegistry,
    UnknownPolicyError,
    load_policies,
)
from recpilot.guide.stages import GuideRequest, ItemSpace

__all__ = [
    "GuideRequest",
    "GuidedList",
    "ItemSpace",
    "Pipeline",
    "PolicyConfig",
    "PolicyRegistry",
    "UnknownPolicyError",
    "load_policies",
]
