"""Probability calibration fitted on the validation period: Platt scaling or isotonic.

Both are stored as plain numbers (json), never pickled: Platt as ``(a, b)`` of
``sigmoid(a * logit(p) + b)``, isotonic as its breakpoints, applied by linear interpolation.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
CalibrationKind = Literal["none", "platt", "isotonic"]
_EPS = 1e-6


def _logit(p: npt.ArrayLike) -> F64:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


class Calibrator:
    """Maps raw probabilities of one behaviour to calibrated ones.

    Args:
        kind: ``none`` (identity), ``platt`` or ``isotonic``.
    """

    def __init__(self, kind: CalibrationKind = "platt") -> None:
        if kind not in ("none", "platt", "isotonic"):
            raise ValueError(f"calibration must be none, platt or isotonic, got {kind!r}")
        self.kind = kind
        self.params_: dict[str, Any] = {}

    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Calibrator:
        """Fit on validation probabilities ``p`` ``(N,)`` and 0/1 labels ``y`` ``(N,)``.

        With a single class in ``y`` nothing can be learnt and the identity is kept.
        """
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(p) != len(y):
            raise ValueError(f"p has {len(p)} values, y has {len(y)}")
        if self.kind == "none" or len(np.unique(y)) < 2:
            self.params_ = {"identity": True}
            return self
        if self.kind == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e6, max_iter=1000)
            lr.fit(_logit(p)[:, None], y)
            self.params_ = {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(p, y)
            self.params_ = {
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        return self

    def transform(self, p: npt.ArrayLike) -> F64:
        """Calibrated probabilities ``(N,)`` in [0, 1]."""
        q = np.asarray(p, dtype=np.float64)
        if not self.params_ or self.params_.get("identity"):
            return q
        if "a" in self.params_:
            z = self.params_["a"] * _logit(q) + self.params_["b"]
            return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)
        return np.asarray(np.interp(q, self.params_["x"], self.params_["y"]), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params_}

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> Calibrator:
        cal = cls(spec["kind"])
        cal.params_ = dict(spec["params"])
        return cal
