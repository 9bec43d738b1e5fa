"""The run viewer in a real browser: opening a huge finished run, and following a busy live one.

Both runs are written straight into the run's Redis stream, as a worker would
write them, so the figures measure the viewer (server read, SSE, fold, drawing)
and not a workflow:

- open: a finished run of ``--spans`` spans (one workflow span, components under
  it, every tenth one an LLM call with tokens). Time from clicking it in ``/ui``
  to its span tree and timeline drawn (the trace says it has every span, and a
  row and a timeline bar are on screen), measured in the page.
- follow: a running run to which a writer thread appends ``--rate`` events a
  second (span started/finished pairs and output lines) for ``--seconds``. The
  page counts animation frames while it follows the run: a frame is dropped for
  each 16.7 ms past the first that a frame interval lasts.

Both are measured twice in one run: in ``nbflow api``'s ``/ui`` (the extension's
rendering code, bundled), and in JupyterLab (the server extension and the built
labextension), as the output renderer for ``application/vnd.nbflow.run+json``:
a notebook whose one output is the run's bundle (``run_bundle``). There, open is
timed from the renderer entering the page (the notebook opened through
``docmanager:open``) to the same drawn state, after one unmeasured open that
starts the notebook's kernel; follow reloads the lab on the live run's notebook.
The notebook widget (the kernel-fed view where the extension is off) is not
measured here.

Debian's Chromium (``/usr/lib/chromium/chromium``), headless, through Playwright.

    python bench/viewer.py [--spans 10000] [--rate 200] [--seconds 10] [--redis URL] [--no-lab]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import nbformat
import redis
from _common import Bench, child_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbflow import constants as c  # noqa: E402
from nbflow.runtime.protocol import encode_event  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_executable  # noqa: E402
from tests.viewer.support import start_lab, stop_process, write_log  # noqa: E402

FRAME_MS = 1000 / 60
LAB_START_S = 90.0
TRACE = ".nbflow-trace"
OUTPUT_TRACE = ".nbflow-output-renderer .nbflow-trace"
WORKFLOW = "bench_trace"  # the runs this script writes, as the views name them
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
OPEN_JS = """async (runId) => {
  const t0 = performance.now();
  document.querySelector(`.nbflow-run-row[data-run="${runId}"]`).click();
  for (;;) {
    await new Promise(requestAnimationFrame);
    const trace = document.querySelector('.nbflow-trace');
    const bar = trace && trace.querySelector('.nbflow-span-row .nbflow-bar:not([hidden])');
    if (trace && trace.dataset.status === 'succeeded' && trace.dataset.spans === '%d' && bar) {
      return performance.now() - t0;
    }
  }
}"""
FRAMES_JS = """async ([seconds, selector]) => {
  const deltas = [];
  let last = performance.now();
  const end = last + seconds * 1000;
  while (last < end) {
    const now = await new Promise(requestAnimationFrame);
    deltas.push(now - last);
    last = now;
  }
  const trace = document.querySelector(selector);
  return {deltas, events: Number(trace.dataset.events), spans: Number(trace.dataset.spans)};
}"""


LAB_OPEN_JS = """async ([path, spans]) => {
  let shown = null;
  const seen = () => {
    const out = document.querySelector('.nbflow-output-renderer');
    if (shown === null && out) shown = performance.now();
  };
  const observer = new MutationObserver(seen);
  observer.observe(document.body, {childList: true, subtree: true});
  const t0 = performance.now();
  window.jupyterapp.commands.execute('docmanager:open', {path});
  for (;;) {
    await new Promise(requestAnimationFrame);
    const trace = document.querySelector('.nbflow-output-renderer .nbflow-trace');
    const bar = trace && trace.querySelector('.nbflow-span-row .nbflow-bar:not([hidden])');
    const all = trace && trace.dataset.spans === String(spans);
    if (all && trace.dataset.status === 'succeeded' && bar) {
      observer.disconnect();
      seen();
      const now = performance.now();
      return {opened: now - t0, drawn: now - shown};
    }
  }
}"""


def span_events(n: int, t0: float, *, parent: str = "root") -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        kind = "llm" if i % 10 == 0 else "component"
        start, end = t0 + i * 0.01, t0 + i * 0.01 + 0.008
        attrs = (
            {"gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 40}
            if kind == "llm"
            else {}
        )
        events.append({"type": "span.started", "ts": start, "span_id": f"s{i}", "parent_id": parent,
                       "name": f"step_{i}", "kind": kind})  # fmt: skip
        events.append({"type": "span.finished", "ts": end, "span_id": f"s{i}", "status": "ok",
                       "attempts": 1, "attrs": attrs})  # fmt: skip
    return events


def finished_run(r: redis.Redis, spans: int, run_id: str) -> str:
    t0 = time.time() - spans * 0.01 - 1
    events = [
        {"type": "run.queued", "ts": t0, "workflow": "bench_trace"},
        {"type": "run.started", "ts": t0, "workflow": "bench_trace"},
        {
            "type": "span.started",
            "ts": t0,
            "span_id": "root",
            "parent_id": None,
            "name": "bench_trace",
            "kind": "workflow",
        },
        *span_events(spans - 1, t0),
        {"type": "span.finished", "ts": t0 + spans * 0.01, "span_id": "root", "status": "ok"},
        {"type": "run.succeeded", "ts": t0 + spans * 0.01, "output": None},
    ]
    write_log(r, run_id, events, status="succeeded", workflow=WORKFLOW)
    r.hset(c.run_meta(run_id), mapping={"ended_at": repr(time.time())})
    return run_id


def live_writer(
    r: redis.Redis, run_id: str, rate: int, seconds: float, stop: threading.Event
) -> None:
    t0 = time.time()
    start = [{"type": "run.queued", "ts": t0, "workflow": "bench_trace"},
             {"type": "run.started", "ts": t0, "workflow": "bench_trace"},
             {"type": "span.started", "ts": t0, "span_id": "root", "parent_id": None,
              "name": "bench_trace", "kind": "workflow"}]  # fmt: skip
    write_log(r, run_id, start, status="running", workflow=WORKFLOW)
    sent, begun = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - begun < seconds:
        due = int((time.monotonic() - begun) * rate)
        pipe = r.pipeline(transaction=False)
        for n in range(sent, due):
            now, i = time.time(), n // 3
            event = (
                {"type": "span.started", "ts": now, "span_id": f"s{i}", "parent_id": "root",
                 "name": f"call_{i}", "kind": "llm"}
                if n % 3 == 0 else
                {"type": "span.finished", "ts": now, "span_id": f"s{i}", "status": "ok",
                 "attrs": {"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 10}}
                if n % 3 == 1 else
                {"type": "output", "ts": now, "chunk": f"token chunk {n}\n"}
            )  # fmt: skip
            pipe.xadd(c.run_log(run_id), {"e": encode_event(event)})
        pipe.execute()
        sent = max(sent, due)
        time.sleep(0.005)
    end = {"type": "run.succeeded", "ts": time.time(), "output": sent}
    r.xadd(c.run_log(run_id), {"e": encode_event(end)})
    r.hset(c.run_meta(run_id), mapping={"status": "succeeded", "ended_at": repr(time.time())})


def serve_api(url: str) -> tuple[str, Any]:
    import uvicorn

    from nbflow.api import create_app
    from nbflow.runtime.client import Runtime

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(Runtime(url, cluster=False))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def frame_stats(deltas: list[float]) -> dict[str, float]:
    dropped = sum(max(0, round(d / FRAME_MS) - 1) for d in deltas)
    return {"frames": len(deltas), "dropped": dropped, "longest_ms": max(deltas, default=0.0)}


def bench_ui(page: Any, api: str, r: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    """``/ui``: the finished run clicked open, scrolled to its end, then the live run followed."""
    open_id = finished_run(r, args.spans, "benchopen")
    page.goto(f"{api}/ui")
    page.wait_for_selector(f'.nbflow-run-row[data-run="{open_id}"]')
    opened_ms = page.evaluate(OPEN_JS % args.spans, open_id)
    page.evaluate("document.querySelector('.nbflow-scroll').scrollTop = 1e9")
    scrolled = frame_stats(page.evaluate(FRAMES_JS, [1, TRACE])["deltas"])
    print(f"open: {args.spans:,}-span finished run, click to tree + timeline drawn: ", end="")
    print(f"{opened_ms:,.0f} ms")
    print(f"      scrolled to the end: {scrolled['frames']} frames in 1 s, ", end="")
    print(f"{scrolled['dropped']} dropped")
    with writing(r, "benchlive", args.rate, args.seconds):
        page.goto("about:blank")
        page.goto(f"{api}/ui#run=benchlive")
        page.wait_for_selector(f'{TRACE}[data-live="1"]')
        measured = page.evaluate(FRAMES_JS, [max(args.seconds - 2, 1), TRACE])
    follow = print_follow("follow", measured, args)
    return {"open_ms": round(opened_ms), "follow": follow, "scroll": scrolled}


@contextmanager
def writing(r: redis.Redis, run_id: str, rate: int, seconds: float) -> Iterator[None]:
    """``live_writer`` on a thread for at most ``seconds``, stopped when the block ends."""
    stop = threading.Event()
    writer = threading.Thread(target=live_writer, args=(r, run_id, rate, seconds, stop))
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def print_follow(
    label: str, measured: dict[str, Any], args: argparse.Namespace
) -> dict[str, float]:
    stats = frame_stats(measured["deltas"])
    print(
        f"{label}: {args.rate} events/s for {args.seconds:.0f} s: {stats['frames']} frames, "
        f"{stats['dropped']} dropped, longest {stats['longest_ms']:.0f} ms; "
        f"{measured['events']:,} events folded, {measured['spans']:,} spans"
    )
    return stats


def write_notebook(path: Path, r: redis.Redis, url: str, run_id: str) -> None:
    """A notebook whose one output is the run's bundle as its log says now."""
    from nbflow.jupyter.display import run_bundle
    from nbflow.runtime.client import Runtime

    data, _ = run_bundle(Runtime(url, cluster=False).attach(run_id))
    output = nbformat.v4.new_output("display_data", data=data)
    cell = nbformat.v4.new_code_cell(f"runtime.attach({run_id!r})", outputs=[output])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": KERNEL}), path)


def kernel_idle(lab: str, token: str) -> None:
    """Wait (bounded) for the notebook's kernel to be up and idle, so it is not measured."""
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + LAB_START_S
    while time.monotonic() < deadline:
        sessions = httpx.get(f"{lab}/api/sessions", headers=headers, timeout=10).json()
        if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
            return
        time.sleep(0.2)
    raise RuntimeError("the notebook's kernel never went idle")


def bench_lab(browser: Any, url: str, r: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    """The JupyterLab renderer: the finished run's output opened, then a live run's followed."""
    with tempfile.TemporaryDirectory(prefix="nbf-lab-") as tmp:
        lab_env = child_env(NBFLOW_REDIS_URL=url)
        lab, token, proc = start_lab(Path(tmp), lab_env, timeout_s=LAB_START_S)
        root = Path(tmp) / "root"
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            write_notebook(root / "run.ipynb", r, url, finished_run(r, args.spans, "labopen"))
            # Once unmeasured: the kernel starts, and the browser has the lab's code.
            page.goto(f"{lab}/lab/tree/run.ipynb?reset&token={token}")
            page.wait_for_selector(f'{OUTPUT_TRACE}[data-status="succeeded"]', timeout=120_000)
            kernel_idle(lab, token)
            page.goto(f"{lab}/lab?reset&token={token}")
            page.wait_for_function(
                "window.jupyterapp && window.jupyterapp.started", timeout=120_000
            )
            page.wait_for_selector("#jp-main-dock-panel")
            opened = page.evaluate(LAB_OPEN_JS, ["run.ipynb", args.spans])
            print(
                f"open (JupyterLab renderer): {args.spans:,}-span finished run's output, ", end=""
            )
            print(f"renderer to tree + timeline drawn: {opened['drawn']:,.0f} ms ", end="")
            print(f"(notebook opened to drawn: {opened['opened']:,.0f} ms)")
            with writing(r, "lablive", args.rate, args.seconds + LAB_START_S):
                while not r.exists(c.run_meta("lablive")):
                    time.sleep(0.01)
                write_notebook(root / "run.ipynb", r, url, "lablive")
                page.goto("about:blank")
                page.goto(f"{lab}/lab/tree/run.ipynb?reset&token={token}")
                page.wait_for_selector(f'{OUTPUT_TRACE}[data-live="1"]', timeout=120_000)
                measured = page.evaluate(FRAMES_JS, [max(args.seconds - 2, 1), OUTPUT_TRACE])
            follow = print_follow("follow (JupyterLab renderer)", measured, args)
            page.close()
        finally:
            stop_process(proc)
    return {"open_ms": round(opened["drawn"]), "notebook_open_ms": round(opened["opened"]),
            "follow": follow}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200, help="events a second in the live run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis", help="an existing server (it is not flushed)")
    parser.add_argument(
        "--no-lab", action="store_true", help="only /ui, not the JupyterLab renderer"
    )
    args = parser.parse_args()
    binary = chromium_executable()
    if binary is None:
        print("Debian's chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    print(f"nbflow viewer benchmark: CPython {platform.python_version()}, {os.cpu_count()} CPUs")
    with Bench(url=args.redis) as bench, sync_playwright() as pw:
        r = redis.Redis.from_url(bench.url)
        api, server = serve_api(bench.url)
        browser = pw.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            figures = {"ui": bench_ui(page, api, r, args)}
            if not args.no_lab:
                page.close()
                figures["lab"] = bench_lab(browser, bench.url, r, args)
            print(json.dumps(figures))
        finally:
            browser.close()
            server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
