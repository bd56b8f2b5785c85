"""`recpilot evaluate --task behaviour` end to end on a small simulator."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recpilot.behaviour.models import BehaviourModel
from recpilot.cli import app

runner = CliRunner()


def test_evaluate_behaviour_writes_a_report_and_models(tmp_path: Path) -> None:
    cfg = tmp_path / "behaviour.yaml"
    cfg.write_text(
        "simulator: {n_users: 150, n_items: 60, n_categories: 4, seed: 2}\n"
        "behaviour: {bootstrap: 30, calibration: isotonic}\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "evaluate", "--task", "behaviour", "--format", "synthetic", "--model", "logistic",
            "--config", str(cfg), "--output-dir", str(out), "--output", str(tmp_path / "r.json"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "bayes-optimal" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["metrics"]) == {"click", "cart", "purchase"}
    click = report["metrics"]["click"]
    assert set(click) == {"logistic", "bayes-optimal"}
    assert 0 < click["logistic"]["ece"] < 1 and click["bayes-optimal"]["auc"] > 0.5
    lo, hi = report["ci"]["click"]["logistic"]["auc"]
    assert lo <= click["logistic"]["auc"] <= hi
    html = (out / "index.html").read_text()
    for kind in ("roc", "pr", "reliability"):
        assert (out / f"{kind}_click.png").is_file() and f"{kind}_click.png" in html
    model = BehaviourModel.load(out / "models" / "logistic")
    assert model.behaviours == ["click", "cart", "purchase"]


def test_evaluate_behaviour_rejects_bad_options(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["evaluate", "--task", "behavior"])
    assert bad.exit_code == 2 and "--task must be ranking or behaviour" in bad.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("behaviour: {calibration: beta}\n")
    res = runner.invoke(
        app, ["evaluate", "--task", "behaviour", "--format", "synthetic", "--config", str(cfg)]
    )
    assert res.exit_code == 2 and "calibration" in res.output
    res = runner.invoke(
        app, ["evaluate", "--task", "behaviour", "--format", "synthetic", "--model", "xgboost"]
    )
    assert res.exit_code == 2 and "unknown behaviour model 'xgboost'" in res.output
