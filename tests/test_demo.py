from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recpilot.cli import app
from recpilot.models.base import Recommender


def test_demo_prints_the_comparison_and_saves_the_best_model(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--output-dir", str(out), "--users", "400", "--items", "200", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    for name in ("popularity", "itemknn", "ease", "als"):
        assert name in result.output
    assert "recommends" in result.output
    summary = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in summary["results"]} == {"popularity", "itemknn", "ease", "als"}
    by_name = {r["model"]: r for r in summary["results"]}
    # the simulator has taste and sequence structure: a personalised model beats popularity
    assert (
        by_name[summary["best"]]["metrics"]["NDCG@10"] > by_name["popularity"]["metrics"]["NDCG@10"]
    )
    model = Recommender.load(out / f"model-{summary['best']}")
    assert model.name == summary["best"]
