"""Published states (nf.publish) in Debian's Chromium: /ui shows a growing plan live as a
JSON tree and ends on the value ``run.state`` reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from nbflow.runtime.client import Runtime

from ..browser import artifact
from ..conftest import TEST_SECRET
from .support import start_run_elsewhere, wait_status
from .test_browser import TRACE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
PLAN = '.nbflow-state[data-name="plan"]'


def test_ui_shows_a_growing_published_plan_live_and_ends_on_run_state(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, runtime: Runtime,
    worker_elsewhere: Any,
) -> None:  # fmt: skip
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "planner", n=6, sleep_s=0.6)
    page.goto(f"{api_url}/ui#run={run_id}")
    # Live: the plan is drawn while the run still runs, and redrawn as patches arrive,
    # keeping what a person opened.
    first_step = page.locator(f'{TRACE}[data-status="running"] {PLAN} [data-pointer="/steps/0"]')
    first_step.wait_for(timeout=20_000)
    assert first_step.get_attribute("data-open") == "0"  # below the open depth
    first_step.locator(".nbflow-json-toggle").first.click()
    opened = page.locator(f'{PLAN} [data-pointer="/steps/0"][data-open="1"]')
    opened.wait_for(timeout=5_000)
    seen = int(page.locator(PLAN).get_attribute("data-version"))
    page.wait_for_function(
        "([sel, v]) => Number(document.querySelector(sel)?.dataset.version) > v",
        arg=[PLAN, seen], timeout=10_000,
    )  # fmt: skip
    assert opened.count() == 1
    assert page.locator(f'{TRACE}[data-status="running"]').count() == 1
    page.screenshot(path=artifact("state-ui-live.png"))

    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]', timeout=30_000)
    wait_status(r, run_id, {"succeeded"})
    final = runtime.attach(run_id).state("plan")
    assert final["done"] is True and len(final["steps"]) == 6

    plan = page.locator(PLAN)
    # The root and its children are open; deeper levels start collapsed, with a count.
    assert plan.locator('[data-pointer=""]').get_attribute("data-open") == "1"
    assert plan.locator('[data-pointer="/steps"]').get_attribute("data-open") == "1"
    step = plan.locator('[data-pointer="/steps/5"]')
    assert step.get_attribute("data-open") == "0"
    assert step.locator(".nbflow-json-summary").inner_text() == "{ … } 4 keys"
    rows = ":scope > .nbflow-json-children > .nbflow-json-row > .nbflow-json-key"
    keys = plan.locator('[data-pointer=""]').locator(rows)
    assert keys.all_inner_texts() == ['"title"', '"steps"', '"done"']  # in the order sent
    step.locator(".nbflow-json-toggle").click()
    assert step.get_attribute("data-open") == "1"
    step_keys = step.locator(rows)
    assert step_keys.all_inner_texts() == ['"query"', '"status"', '"sources"', '"note"']
    # A long string is cut, with a button for the rest; the button shows it whole.
    more = step.locator(".nbflow-json-more")
    assert more.inner_text() == f"+{len(final['steps'][5]['note']) - 160:,} chars"
    more.click()
    note = json.dumps(final["steps"][5]["note"])
    step.locator(".nbflow-json-string", has_text="finding 5.11").wait_for(timeout=5_000)
    assert note in step.inner_text()
    page.screenshot(path=artifact("state-ui-tree.png"))
    plan.locator(".nbflow-state-raw").click()
    shown = json.loads(plan.locator(".nbflow-json-raw").inner_text())
    assert shown == final
    page.screenshot(path=artifact("state-ui-json.png"))
