"""The web UI's policy dropdown end to end (headless Chromium, as in test_ui_browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recpilot.serving.service import RecService

from .conftest import WRITE_KEY, make_settings
from .test_ui_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark, serve_ui, sync_api

__all__ = ["pytestmark"]

POLICIES = """
default: plain
policies:
  plain: {description: "the model's order", stages: []}
  promote:
    description: campaign in slot 2
    stages: [{type: promote, items: ["i3_1"], max_share: 0.2, positions: [1]}]
"""


@pytest.fixture
def served(tmp_path: Path, artifact: Path) -> Iterator[tuple[RecService, str]]:
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    settings = make_settings(artifact, f"sqlite:///{tmp_path / 'ui.db'}", policies=policies)
    with serve_ui(settings) as served:
        yield served


def test_choosing_a_policy_re_ranks_and_names_the_stage(served: tuple[RecService, str]) -> None:
    _service, url = served
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(f"{url}/ui")
            expect = sync_api.expect
            page.get_by_test_id("api-key").fill(WRITE_KEY)
            page.get_by_test_id("key-save").click()
            expect(page.get_by_test_id("key-status")).to_contain_text("accepted")
            policy = page.get_by_test_id("policy")
            expect(policy.locator("option")).to_have_count(3)  # default + two policies
            expect(policy.locator("option").first).to_have_text("default (plain)")
            page.locator("[data-testid=users] li[data-user-id=alice]").click()
            reasons = page.get_by_test_id("reason")
            expect(reasons.first).to_contain_text("because you viewed Gadget 0-0")
            policy.select_option("promote")
            expect(reasons.nth(1)).to_have_text("promoted")
            expect(page.locator("#rec-meta")).to_contain_text("policy promote")
        finally:
            browser.close()
    assert not problems, problems
