"""Calibration on a synthetic case with known rates, and the report helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recpilot.behaviour.calibration import Calibrator
from recpilot.behaviour.report import behaviour_metrics, paired_bootstrap, plot_curves, write_report
from recpilot.evaluation.metrics import expected_calibration_error


def _known_rates(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.2, n)
    p_true = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < p_true).astype(np.float64)
    p_raw = 1 / (1 + np.exp(-(2.5 * z + 1.0)))  # overconfident and biased
    return p_raw, p_true, y


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_calibration_recovers_known_rates(kind: str) -> None:
    p_raw, _, y = _known_rates(40_000, 0)
    p_test, p_true, y_test = _known_rates(40_000, 1)
    assert expected_calibration_error(y_test, p_test) > 0.05
    cal = Calibrator(kind).fit(p_raw, y)
    out = cal.transform(p_test)
    assert ((out >= 0) & (out <= 1)).all()
    assert expected_calibration_error(y_test, out) <= 0.02
    # close to the true probabilities themselves, not only on average
    assert np.mean(np.abs(out - p_true)) < 0.03
    restored = Calibrator.from_json(cal.to_json())
    np.testing.assert_array_equal(restored.transform(p_test), out)


def test_platt_keeps_the_order_and_none_is_identity() -> None:
    p_raw, _, y = _known_rates(5_000, 2)
    out = Calibrator("platt").fit(p_raw, y).transform(p_raw)
    assert (np.diff(out[np.argsort(p_raw)]) >= -1e-12).all()
    np.testing.assert_array_equal(Calibrator("none").fit(p_raw, y).transform(p_raw), p_raw)
    with pytest.raises(ValueError, match="none, platt or isotonic"):
        Calibrator("beta")  # type: ignore[arg-type]


def test_metrics_bootstrap_and_report(tmp_path: Path) -> None:
    _, p_true, y = _known_rates(3_000, 3)
    users = np.arange(3_000) % 50
    m = behaviour_metrics(y, p_true, users, threshold=0.5)
    assert 0.5 < m["auc"] < 1 and 0.5 < m["user_auc"] < 1
    assert m["ece"] < 0.05 and m["n"] == 3_000
    noise = np.clip(p_true + np.random.default_rng(0).normal(0, 0.2, 3_000), 0.001, 0.999)
    cis = paired_bootstrap(y, {"truth": p_true, "noisy": noise}, "truth", n_resamples=200)
    lo, hi = cis["truth"]["auc"]
    assert lo <= m["auc"] <= hi
    assert cis["noisy"]["auc_diff"][1] < 0  # noise costs AUC, and the paired CI sees it
    images = plot_curves(tmp_path, "click", y, {"truth": p_true, "noisy": noise})
    assert set(images) == {"roc", "pr", "reliability"}
    for file in images.values():
        assert (tmp_path / file).read_bytes()[:4] == b"\x89PNG"
    page = write_report(
        tmp_path, "t", {"metrics": {"click": {"truth": m}}, "ci": {}}, {"click": images}
    )
    text = page.read_text()
    assert "roc_click.png" in text and "truth" in text
    assert (tmp_path / "report.json").is_file()
