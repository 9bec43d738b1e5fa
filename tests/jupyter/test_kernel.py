"""A real kernel (jupyter_client): start a ``%%workflow`` run, restart the kernel mid-run;
re-running the cell attaches instead of starting a duplicate, and ``%nbflow attach`` sees
the run's whole log in order, then its end."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from nbflow.jupyter.display import MIME, WIDGET_MIME
from nbflow.runtime.client import Runtime

from ..conftest import TEST_SECRET, wait_until

NOTEBOOK = "kernel_test.ipynb"
PARTS = 40
# Halfway through, the run waits for the test to create the file ``gate``: it is surely
# still running while the kernel restarts and the notebook re-attaches.
LONG_CELL = """\
import os, time
for i in range(n):
    if i == n // 2:
        while not os.path.exists(gate):
            time.sleep(0.05)
    nf.progress(f"part {i // 10}")
    nf.emit(f"{i} ")
    time.sleep(0.05)
n
"""


@pytest.fixture
def kernel(redis_url: str, runtime: Runtime) -> Iterator[KernelManager]:
    env = {
        **os.environ,
        "NBFLOW_REDIS_URL": redis_url,
        "NBFLOW_SECRET": TEST_SECRET.decode(),
        "JPY_SESSION_NAME": NOTEBOOK,
    }
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    yield km
    km.shutdown_kernel(now=True)
    km.cleanup_resources()


def execute(km: KernelManager, code: str, timeout_s: float = 60) -> dict[str, Any]:
    """Run ``code``; its stdout text, display bundles and error, if any."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        seen: dict[str, Any] = {"stdout": "", "displays": [], "error": None}

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                seen["stdout"] += content["text"]
            elif kind in ("display_data", "update_display_data", "execute_result"):
                seen["displays"].append(content["data"])
            elif kind == "error":
                seen["error"] = "\n".join(content["traceback"])

        kc.execute_interactive(code, timeout=timeout_s, output_hook=hook)
        return seen
    finally:
        kc.stop_channels()


@pytest.mark.slow
def test_attach_after_kernel_restart_sees_the_whole_log_in_order_then_the_end(
    kernel: KernelManager, runtime: Runtime, worker: Callable[..., Any], tmp_path: Path
) -> None:
    worker()
    gate = tmp_path / "gate"
    long_cell = f"%%workflow counting --n {PARTS} --gate {gate}\n{LONG_CELL}"
    out = execute(kernel, "import nbflow as nf\n%load_ext nbflow")
    assert out["error"] is None
    out = execute(kernel, long_cell)
    assert out["error"] is None, out["error"]
    assert any(MIME in d and "text/html" in d for d in out["displays"])
    run_id = out["displays"][0][MIME]["run_id"]
    run = runtime.attach(run_id)
    assert run.meta()["notebook"] == NOTEBOOK
    wait_until(
        lambda: sum(e["type"] == "output" for e in run.events(follow=False)) >= 5, timeout_s=30
    )

    kernel.restart_kernel(now=True)
    assert run.status() == "running"  # the run lives on without its kernel
    out = execute(kernel, "import nbflow as nf\n%load_ext nbflow")
    out = execute(kernel, long_cell)  # the same cell again
    assert f"run {run_id} of this cell is in flight: attaching" in out["stdout"], out
    assert runtime.run_ids() == [run_id]  # no duplicate started
    out = execute(kernel, "%nbflow attach")
    assert out["error"] is None, out["error"]
    assert f"attached to run {run_id} (running)" in out["stdout"]
    assert any(d.get(MIME, {}).get("run_id") == run_id for d in out["displays"])
    gate.touch()

    probe = (
        "import json\nfrom nbflow.jupyter import view\nv = view.views()[-1]\n"
        "assert v.wait(30)\n"
        "print(json.dumps({'run': v.run.id, 'ids': v.event_ids, 'status': v.state.status,"
        " 'emitted': v.state.emitted, 'last': nf.last_run().id}))"
    )
    seen = json.loads(execute(kernel, probe)["stdout"])
    log = list(run.events(follow=False))
    ids = [tuple(map(int, i.split("-"))) for i in seen["ids"]]
    assert seen["run"] == run_id == seen["last"]
    assert ids == sorted(set(ids))  # strictly increasing: nothing doubled or out of order
    assert seen["ids"] == [e["id"] for e in log]  # nothing missing
    assert log[0]["type"] == "run.queued" and log[-1]["type"] == "run.succeeded"
    assert seen["status"] == "succeeded"
    assert seen["emitted"] == "".join(f"{i} " for i in range(PARTS))
    assert run.result(timeout_s=5) == PARTS


@pytest.mark.slow
def test_without_a_front_end_the_widget_gives_way_to_an_updating_html_snapshot(
    kernel: KernelManager, worker: Callable[..., Any]
) -> None:
    worker()
    kc = kernel.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        setup = (
            "import nbflow as nf\n%load_ext nbflow\n"
            "from nbflow.jupyter import view\nview.FALLBACK_AFTER_S = 0.3"
        )
        kc.execute_interactive(setup, timeout=60)
        body = "import time\nfor i in range(n):\n    nf.emit(f'{i} ')\n    time.sleep(0.3)\nn"
        shown: list[dict[str, Any]] = []
        kc.execute_interactive(
            f"%%workflow quick --n 4\n{body}", timeout=60, output_hook=_displays(shown)
        )
        assert WIDGET_MIME in shown[0]  # a kernel: the widget first
        updates: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _final(updates):
            with contextlib.suppress(queue.Empty):
                _displays(updates)(kc.get_iopub_msg(timeout=0.2))
    finally:
        kc.stop_channels()
    # Nobody drew it: the display was replaced by HTML snapshots, the last one final.
    assert updates and all(WIDGET_MIME not in u for u in updates)
    assert _final(updates) and "0 1 2 3" in updates[-1]["text/html"]


def _displays(into: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind in ("display_data", "update_display_data") and MIME in content["data"]:
            into.append(content["data"])

    return hook


def _final(updates: list[dict[str, Any]]) -> bool:
    return bool(updates) and updates[-1][MIME]["status"] == "succeeded"


@pytest.mark.slow
def test_after_a_restart_load_ext_then_attach_follows_the_notebooks_run_to_its_end(
    kernel: KernelManager, runtime: Runtime, worker: Callable[..., Any], tmp_path: Path
) -> None:
    """What the README says to do after a restart: ``%load_ext nbflow``, ``%nbflow attach``."""
    worker()
    gate = tmp_path / "gate"
    execute(kernel, "import nbflow as nf\n%load_ext nbflow")
    started = execute(kernel, f"%%workflow counting --n 8 --gate {gate}\n{LONG_CELL}")
    run_id = started["displays"][0][MIME]["run_id"]
    kernel.restart_kernel(now=True)
    fresh = execute(kernel, "print(get_ipython().find_line_magic('nbflow'))")
    assert fresh["stdout"].strip() == "None"  # a fresh kernel knows no nbflow magic yet
    assert runtime.attach(run_id).status() == "running"

    execute(kernel, "%load_ext nbflow")
    out = execute(kernel, "%nbflow attach")
    assert out["error"] is None, out["error"]
    assert f"attached to run {run_id} (running)" in out["stdout"]
    assert out["displays"][0][MIME]["run_id"] == run_id
    gate.touch()
    probe = (
        "from nbflow.jupyter import view\n"
        "assert view.views()[-1].wait(30)\nprint(view.views()[-1].state.status)"
    )
    ended = execute(kernel, probe)
    assert ended["stdout"].strip() == "succeeded"
    finals = [d for d in ended["displays"] if d[MIME]["status"] == "succeeded"]
    assert finals and finals[-1][MIME]["run_id"] == run_id  # the attached view ends final
