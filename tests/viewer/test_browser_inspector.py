"""The span inspector, search and filters, a 10,000-span run and a restart, in /ui (Debian's
Chromium). The same trace view draws the JupyterLab renderer, the runs panel and the
notebook widget: tests/viewer/test_browser.py and tests/jupyter/test_browser.py click
spans there too."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from nbflow.llm.offline import serve_offline

from ..browser import artifact
from ..conftest import TEST_SECRET, last_local_run
from . import viewer_apps
from .support import start_run_elsewhere, start_worker, wait_status, write_log

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
TRACE = ".nbflow-trace"
ROWS = f"{TRACE} .nbflow-span-row:not([hidden])"
INSPECTOR = f"{TRACE} .nbflow-inspector"


def row(page: Any, name: str) -> Any:
    return page.locator(ROWS).filter(has=page.locator(".nbflow-name", has_text=name))


def fact(page: Any, label: str) -> str:
    return str(page.locator(f'{INSPECTOR} dt[data-fact="{label}"] + dd').inner_text())


def test_the_inspector_shows_messages_attempts_cache_and_cost(
    page: Any, api_url: str, r: redis.Redis
) -> None:
    with serve_offline() as offline:
        viewer_apps.inspected(offline.base_url)
    run = last_local_run()
    write_log(r, run.id, list(run.sink.events), status="succeeded")
    page.goto(f"{api_url}/ui#run={run.id}")
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]')
    steps = page.locator(f"{TRACE} .nbflow-step")
    assert "asking about Oslo" in steps.nth(0).inner_text()  # nf.progress(step, detail)

    row(page, "chat gpt-4o-mini").click()
    page.wait_for_selector(f"{INSPECTOR}:not([hidden])")
    messages = page.locator(f"{INSPECTOR} .nbflow-message")
    assert messages.evaluate_all("ms => ms.map(m => m.dataset.role)") == [
        "system",
        "user",
        "assistant",
    ]
    assert "Weather in Oslo?" in messages.nth(1).inner_text()
    assert messages.nth(2).inner_text().strip() != "assistant (reply)"  # the reply's text
    assert fact(page, "model") == "gpt-4o-mini"
    assert fact(page, "finish reason") == "stop"
    assert "in /" in fact(page, "tokens") and fact(page, "cost").startswith("$")
    assert "gen_ai.usage.input_tokens" in page.inner_text(f"{INSPECTOR} .nbflow-attrs")
    page.screenshot(path=artifact("inspector-llm.png"))

    row(page, "lookup").click()
    page.wait_for_selector(f'{INSPECTOR} .nbflow-attempt[data-attempt="2"]')
    attempts = page.locator(f"{INSPECTOR} .nbflow-attempt")
    assert attempts.count() == 2  # two failed attempts, then the third succeeded
    assert "TimeoutError: the weather API timed out (Oslo, try 1)" in attempts.nth(0).inner_text()
    assert "TimeoutError: TimeoutError" not in attempts.nth(0).inner_text()  # said once
    assert fact(page, "attempts") == "3"
    assert '"temp_c"' in page.inner_text(f'{INSPECTOR} [data-section="output"]')
    assert "Oslo" in page.inner_text(f'{INSPECTOR} [data-section="input"]')
    page.screenshot(path=artifact("inspector-retries.png"))

    squares = row(page, "slow_square")
    assert squares.count() == 2
    squares.nth(1).click()
    page.wait_for_function(
        "() => document.querySelector('.nbflow-inspector dt[data-fact=\"cache\"] + dd')"
        "?.textContent === 'hit'"
    )
    assert fact(page, "cache key")
    squares.nth(0).click()
    page.wait_for_function(
        "() => document.querySelector('.nbflow-inspector dt[data-fact=\"cache\"] + dd')"
        "?.textContent === 'miss'"
    )

    page.fill(f"{TRACE} .nbflow-span-search", "square")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 3")
    assert "3 of 5 spans" in page.inner_text(f"{TRACE} .nbflow-span-count")  # with the root
    page.fill(f"{TRACE} .nbflow-span-search", "")
    page.select_option(f'{TRACE} select[title="kind"]', "llm")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 2")
    page.select_option(f'{TRACE} select[title="kind"]', "")
    page.select_option(f'{TRACE} select[title="status"]', "error")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 0")
    page.screenshot(path=artifact("inspector-filtered.png"))


def spans(n: int, t0: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"type": "run.queued", "ts": t0, "workflow": "big"},
        {"type": "run.started", "ts": t0, "workflow": "big"},
        {"type": "span.started", "ts": t0, "span_id": "root", "parent_id": None,
         "name": "big", "kind": "workflow"},
    ]  # fmt: skip
    for i in range(n - 1):
        attrs = {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}
        events.append({"type": "span.started", "ts": t0 + i * 0.001, "span_id": f"s{i}",
                       "parent_id": "root", "name": f"step_{i}", "kind": "llm"})  # fmt: skip
        events.append({"type": "span.finished", "ts": t0 + i * 0.001 + 0.0005,
                       "span_id": f"s{i}", "status": "ok", "attrs": attrs})  # fmt: skip
    return events


def test_ten_thousand_spans_draw_search_and_follow_a_live_run(
    page: Any, api_url: str, r: redis.Redis
) -> None:
    t0 = time.time() - 20
    done = [*spans(10_000, t0), {"type": "run.succeeded", "ts": t0 + 11}]
    write_log(r, "bigrun", done, status="succeeded")
    page.goto(f"{api_url}/ui#run=bigrun")
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"][data-spans="10000"]', timeout=60_000)
    drawn = page.locator(ROWS).count()
    assert 10 < drawn < 150  # only the rows in view (and a few around them)
    page.evaluate(f"document.querySelector('{TRACE} .nbflow-scroll').scrollTop = 1e9")
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{ROWS}')]"
        ".some(r => r.textContent.includes('step_9998'))"
    )
    page.fill(f"{TRACE} .nbflow-span-search", "step_777")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 12")
    assert page.inner_text(f"{TRACE} .nbflow-span-count") == "12 of 10,000 spans"
    row(page, "step_7775").click()
    page.wait_for_selector(f'{INSPECTOR}[data-span="s7775"]')
    page.screenshot(path=artifact("viewer-10k-spans-search.png"))

    live = spans(400, time.time())
    write_log(r, "liverun", live[:100], status="running")
    page.goto("about:blank")
    page.goto(f"{api_url}/ui#run=liverun")
    page.wait_for_selector(f'{TRACE}[data-live="1"]')
    scroll = f"document.querySelector('{TRACE} .nbflow-scroll')"
    at_bottom = f"(s => s.scrollTop + s.clientHeight >= s.scrollHeight - 11)({scroll})"

    def append(events: list[dict[str, Any]]) -> None:
        from nbflow import constants as c
        from nbflow.runtime.protocol import encode_event

        for event in events:
            r.xadd(c.run_log("liverun"), {"e": encode_event(event)})
            time.sleep(0.005)

    writer = threading.Thread(target=append, args=(live[100:300],))
    writer.start()
    page.wait_for_function(f"() => {scroll}.scrollHeight > {scroll}.clientHeight * 1.5")
    writer.join()
    page.wait_for_function(f"() => {at_bottom}")  # it followed the newest rows
    page.evaluate(f"{scroll}.scrollTop = 0")  # the reader scrolls up: following stops
    append(live[300:])
    page.wait_for_selector(f'{TRACE}[data-spans="400"]')
    time.sleep(0.3)
    assert page.evaluate(f"{scroll}.scrollTop") == 0
    page.evaluate(f"{scroll}.scrollTop = 1e9")  # back at the bottom: following again
    append([{"type": "run.succeeded", "ts": time.time()}])
    page.wait_for_selector(f'{TRACE}[data-status="succeeded"]')


def test_a_restart_mid_run_shows_and_the_view_goes_on(
    page: Any, api_url: str, redis_url: str, r: redis.Redis, worker_elsewhere: Any
) -> None:
    run_id = start_run_elsewhere(redis_url, TEST_SECRET, "paced", n=16, sleep_s=0.25)
    page.goto(f"{api_url}/ui#run={run_id}")
    page.wait_for_selector(f'{TRACE}[data-status="running"][data-live="1"]')
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length >= 3")
    worker_elsewhere.kill()  # the worker dies mid-run, holding the run
    worker_elsewhere.wait(10)
    again = start_worker(redis_url, TEST_SECRET)
    try:
        page.wait_for_selector(f'{TRACE}[data-restarts="1"]', timeout=60_000)
        assert page.inner_text(f"{TRACE} .nbflow-restarts").startswith("restarted")
        page.screenshot(path=artifact("viewer-restarted.png"))
        assert wait_status(r, run_id, {"succeeded"}, timeout_s=60) == "succeeded"
        page.wait_for_selector(f'{TRACE}[data-status="succeeded"]', timeout=30_000)
        assert page.locator(ROWS).count() == 17  # each step once, the replayed ones too
        assert "finished step 15" in page.inner_text(f"{TRACE} .nbflow-output")
        page.reload()  # a reload keeps the view: the same run, replayed from its log
        page.wait_for_selector(f'{TRACE}[data-status="succeeded"][data-run="{run_id}"]')
        page.wait_for_selector(f'{TRACE}[data-restarts="1"]')
    finally:
        again.kill()
        again.wait(10)
