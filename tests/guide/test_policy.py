"""Policy files, the pipeline and the hot-reloading registry."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from recpilot.errors import ConfigError
from recpilot.guide.policy import (
    Pipeline,
    PolicyConfig,
    PolicyRegistry,
    UnknownPolicyError,
    load_policies,
)
from recpilot.guide.stages import PROMOTED, GuideRequest, ItemSpace

from ..conftest import REPO_ROOT
from .conftest import N_ITEMS


def _write(path: Path, text: str, bump_ns: int = 0) -> None:
    path.write_text(text)
    if bump_ns:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def test_the_example_policy_file_loads_and_builds(space: ItemSpace) -> None:
    file = load_policies(REPO_ROOT / "configs" / "policies.yml")
    assert file.default == "default"
    assert {"default", "diverse", "explore", "promote-campaign", "long-tail"} <= set(file.policies)
    ids = [str(i) for i in range(N_ITEMS)]
    numeric = ItemSpace(
        N_ITEMS,
        item_ids=ids,
        categories=space.categories,
        category_names=space.category_names,
        popularity=space.popularity,
        created_at=space.created_at,
        similarity=space.similarity,
        new_items=space.new_items,
    )
    rng = np.random.default_rng(0)
    for name, policy in file.policies.items():
        pipe = Pipeline.from_config(policy, numeric, name=name)
        out = pipe.run(rng.standard_normal(N_ITEMS), GuideRequest(np.arange(5), 10, rng), numeric)
        assert len(out.items) == 10, name
        assert np.all((out.propensities > 0) & (out.propensities <= 1))


def test_invalid_policy_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    _write(bad, "policies:\n  x:\n    stages:\n      - {type: mmr, lambda: 2}\n")
    with pytest.raises(ConfigError, match=r"policies\.x\.stages\.0\.mmr\.lambda"):
        load_policies(bad)
    _write(bad, "policies:\n  x:\n    stages:\n      - {type: shuffle}\n")
    with pytest.raises(ConfigError, match="shuffle"):
        load_policies(bad)
    _write(bad, "default: nope\npolicies:\n  x: {}\n")
    with pytest.raises(ConfigError, match="default policy 'nope' is not defined; defined: x"):
        load_policies(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_policies(tmp_path / "missing.yaml")


def test_stage_that_cannot_be_built_names_policy_and_stage(space: ItemSpace) -> None:
    cfg = PolicyConfig.model_validate(
        {
            "stages": [
                {"type": "filter_seen"},
                {"type": "promote", "items": ["nope"], "max_share": 0.2},
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"policy 'p', stage 1 \(promote\): none of the campaign"):
        Pipeline.from_config(cfg, space, name="p")
    cat = PolicyConfig.model_validate(
        {"stages": [{"type": "steer", "target": {"kind": "category", "categories": ["food"]}}]}
    )
    with pytest.raises(ConfigError, match="known categories: books, games, music, toys"):
        Pipeline.from_config(cat, space)


def test_promotion_from_config_uses_external_ids(space: ItemSpace, scores: np.ndarray) -> None:
    cfg = PolicyConfig.model_validate(
        {"stages": [{"type": "promote", "items": ["i3", "i4"], "max_share": 0.1, "positions": [1]}]}
    )
    out = Pipeline.from_config(cfg, space).run(
        scores, GuideRequest(np.empty(0, np.int64), 10, np.random.default_rng()), space
    )
    assert out.reasons[1] == PROMOTED and out.items[1] in (3, 4)
    assert sum(r == PROMOTED for r in out.reasons) == 1


def test_run_batch_equals_run_per_row(space: ItemSpace) -> None:
    cfg = PolicyConfig.model_validate(
        {
            "candidates": 50,
            "stages": [
                {"type": "filter_seen"},
                {"type": "mmr", "lambda": 0.6},
                {"type": "novelty", "weight": 0.1},
            ],
        }
    )
    pipe = Pipeline.from_config(cfg, space)
    rng = np.random.default_rng(1)
    S = rng.standard_normal((6, N_ITEMS)).astype(np.float32)
    hist = [rng.choice(N_ITEMS, n, replace=False) for n in (0, 3, 10, 1, 5, 40)]
    batch = pipe.run_batch(S, hist, 8, space, rng)
    for b in range(6):
        one = pipe.run(S[b], GuideRequest(hist[b], 8, rng), space)
        assert batch.items[b].tolist() == one.items.tolist()
        assert batch.reasons[b] == one.reasons


def test_pipeline_rejects_bad_input(space: ItemSpace) -> None:
    pipe = Pipeline([])
    with pytest.raises(ValueError, match="scores have 3 items, the ItemSpace 120"):
        pipe.run(
            np.zeros(3), GuideRequest(np.empty(0, np.int64), 5, np.random.default_rng()), space
        )
    with pytest.raises(ValueError, match="k must be >= 1"):
        pipe.run(
            np.zeros(N_ITEMS),
            GuideRequest(np.empty(0, np.int64), 0, np.random.default_rng()),
            space,
        )


def test_everything_blocked_gives_an_empty_list(space: ItemSpace) -> None:
    pipe = Pipeline([])
    out = pipe.run(
        np.zeros(N_ITEMS),
        GuideRequest(np.empty(0, np.int64), 5, np.random.default_rng()),
        space,
        blocked=np.ones(N_ITEMS, dtype=bool),
    )
    assert len(out.items) == 0


def test_registry_hot_reloads_on_change_and_keeps_old_policies_on_a_bad_edit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "policies.yaml"
    _write(path, "default: a\npolicies:\n  a: {stages: []}\n")
    reg = PolicyRegistry(path, check_seconds=0)
    assert reg.names() == ["a"]
    resolved = reg.resolve(None)
    assert resolved is not None and resolved[0] == "a"
    with pytest.raises(UnknownPolicyError, match="unknown policy 'b'; known policies: a") as err:
        reg.resolve("b")
    assert err.value.known == ["a"]

    _write(
        path,
        "default: a\npolicies:\n  a: {stages: []}\n  b: {stages: [{type: mmr, lambda: 0.5}]}\n",
        bump_ns=1_000_000,
    )
    assert reg.resolve("b") is not None and reg.generation == 2
    assert reg.names() == ["a", "b"]

    _write(path, "policies: [not, a, mapping]\n", bump_ns=2_000_000)
    assert reg.names() == ["a", "b"]  # the broken edit is ignored
    assert reg.last_error is not None and "invalid policy file" in reg.last_error

    _write(path, "policies:\n  c: {}\n", bump_ns=3_000_000)
    assert reg.names() == ["c"] and reg.last_error is None
    assert reg.resolve(None) is None  # no default: the model's own order


def test_registry_without_a_file_serves_the_model_order() -> None:
    reg = PolicyRegistry(None)
    assert reg.names() == [] and reg.resolve(None) is None
    with pytest.raises(UnknownPolicyError, match=r"known policies: \(none\)"):
        reg.resolve("diverse")


def test_registry_checks_at_most_every_check_seconds(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    _write(path, "policies:\n  a: {}\n")
    reg = PolicyRegistry(path, check_seconds=3600)
    _write(path, "policies:\n  b: {}\n", bump_ns=1_000_000)
    assert reg.names() == ["a"]  # not looked at yet
    assert reg.reload_if_changed(force=True)
    assert reg.names() == ["b"]
