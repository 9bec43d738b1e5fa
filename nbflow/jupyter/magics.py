"""IPython magics: ``%%component``, ``%%workflow NAME`` and ``%nbflow``.

``%%workflow`` turns the cell into the body of a workflow whose parameters are
the ``--ARG VALUE`` pairs and whose result is the cell's last expression, and
submits it. A cell re-run while its run is in flight attaches to that run: the
run's metadata carries a ``cell`` key (notebook or kernel, name, source, args),
so the match also holds after a kernel restart.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import json
import os
import shlex
import socket
import threading
import time
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .. import _component, _workflow
from .._local import last_run, set_last
from ..runtime.listing import RunQuery, list_runs
from . import view
from .origin import kernel_origin

WORKFLOW_FLAGS = ("local", "no-display", "new")
IN_FLIGHT = ("queued", "running", "waiting")
RECENT_RUNS = 200
LOCAL_START_TIMEOUT_S = 10.0
NBFLOW_USAGE = "%nbflow runs | attach [RUN ...] | up | down | status | deploy NAME"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _component_parser() -> _Parser:
    p = _Parser(prog="%%component", add_help=False)
    p.add_argument("--retry", type=int, default=None, help="attempts")
    p.add_argument("--cache", type=float, default=None, help="ttl in seconds")
    p.add_argument("--timeout", type=float, default=None, help="seconds")
    return p


def parse_workflow_line(line: str) -> tuple[str, dict[str, Any], set[str]]:
    """``NAME --ARG VALUE ... --local`` → (name, inputs, flags)."""
    tokens = shlex.split(line)
    if not tokens or not tokens[0].isidentifier():
        raise UsageError("%%workflow NAME [--ARG VALUE ...] [--local] [--no-display] [--new]")
    name, rest = tokens[0], tokens[1:]
    inputs: dict[str, Any] = {}
    flags: set[str] = set()
    while rest:
        token = rest.pop(0)
        if not token.startswith("--"):
            raise UsageError(f"%%workflow: expected --ARG, got {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq and key in WORKFLOW_FLAGS:
            flags.add(key)
            continue
        if not eq:
            if not rest or rest[0].startswith("--"):
                raise UsageError(
                    f"%%workflow: --{key} needs a value (--{key} VALUE, or --{key}=VALUE); "
                    f"the flags that take none are --{', --'.join(WORKFLOW_FLAGS)}"
                )
            value = rest.pop(0)
        if not key.isidentifier():
            raise UsageError(f"%%workflow: {key!r} is not a valid argument name")
        inputs[key] = _literal(value)
    return name, inputs, flags


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def workflow_source(name: str, params: list[str], cell: str) -> ast.Module:
    """The cell as the body of ``def NAME(params)``, its last expression returned."""
    body = ast.parse(cell).body or [ast.Pass()]
    last = body[-1]
    if isinstance(last, ast.Expr):
        body[-1] = ast.copy_location(ast.Return(value=last.value), last)
    keyword = "async def" if _awaits(body) else "def"
    module = ast.parse(f"{keyword} {name}({', '.join(params)}):\n    pass\n")
    module.body[0].body = body  # type: ignore[attr-defined]
    return ast.fix_missing_locations(module)


def _awaits(body: list[ast.stmt]) -> bool:
    """Whether the cell awaits at its top level (not inside a function it defines)."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith):
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            todo.extend(ast.iter_child_nodes(node))
    return False


def scope() -> str:
    """Which notebook (else kernel, else process) runs belong to, for de-dup and re-attach."""
    origin = kernel_origin()
    return str(
        origin.get("notebook") or origin.get("kernel") or f"{socket.gethostname()}:{os.getpid()}"
    )


def cell_key(name: str, cell: str, inputs: dict[str, Any]) -> str:
    source = hashlib.sha256(cell.encode()).hexdigest()
    blob = json.dumps([scope(), name, source, inputs], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _runtime() -> Any:
    from ..runtime.client import get_runtime

    return get_runtime()


def in_flight(runtime: Any, key: str) -> Any:
    """The newest run in flight that this cell started with these inputs, if any."""
    page = list_runs(runtime.redis, RunQuery(status=IN_FLIGHT, cell=key), limit=1)
    return runtime.attach(page.runs[0]["run_id"]) if page.runs else None


def my_runs(runtime: Any, limit: int = RECENT_RUNS) -> list[dict[str, Any]]:
    """This notebook's runs (else this kernel's, else any), newest first, among the
    newest runs a listing looks through (``SCAN_MAX``)."""
    origin = kernel_origin()
    if origin.get("notebook"):
        query = RunQuery(notebook=origin["notebook"])
    else:
        query = RunQuery(kernel=origin.get("kernel"))
    return list_runs(runtime.redis, query, limit=limit).runs


def latest_runs(runtime: Any) -> list[str]:
    """Ids of this notebook's runs still in flight, else of its newest run; oldest first."""
    metas = my_runs(runtime)
    live = [m["run_id"] for m in metas if m.get("status") in IN_FLIGHT]
    chosen = live or [m["run_id"] for m in metas[:1]]
    return list(reversed(chosen))


@magics_class
class NbflowMagics(Magics):
    @property
    def sh(self) -> Any:
        return self.shell

    # --- %%component ---------------------------------------------------------
    @cell_magic
    def component(self, line: str, cell: str) -> None:
        """%%component [--retry N] [--cache TTL] [--timeout S]: functions become components."""
        options = _component_parser().parse_args(shlex.split(line))
        names = [
            n.name
            for n in ast.parse(self.sh.transform_cell(cell)).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        if not names:
            raise UsageError(
                "%%component: the cell defines no function (def or async def at its top level) "
                "to make a component of"
            )
        result = self.sh.run_cell(cell, store_history=False)
        if not result.success:
            return
        ns = self.sh.user_ns
        for name in names:
            if isinstance(ns[name], _component.Component):
                continue  # decorated in the cell: its own options win
            ns[name] = _component.Component(
                ns[name],
                name=name,
                retry=options.retry,
                cache=options.cache,
                timeout_s=options.timeout,
            )

    # --- %%workflow ----------------------------------------------------------
    @cell_magic
    def workflow(self, line: str, cell: str) -> Any:
        """%%workflow NAME [--ARG VALUE ...] [--local] [--no-display] [--new]"""
        name, inputs, flags = parse_workflow_line(line)
        wf = self._define(name, list(inputs), cell)
        show = "no-display" not in flags and view.view_mode() != "none"
        if "local" in flags:
            return run_in_process(wf, inputs, show=show)
        runtime = _runtime()
        key = cell_key(name, cell, inputs)
        run = None if "new" in flags else in_flight(runtime, key)
        if run is not None:
            print(
                f"nbflow: run {run.id} of this cell is in flight: attaching (--new starts another)"
            )
            set_last(run)
        else:
            run = runtime.submit(wf, (), inputs, cell=key)
        if show:
            view.watch(run)
        return None

    def _define(self, name: str, params: list[str], cell: str) -> _workflow.Workflow:
        source = self.sh.transform_cell(cell)
        filename = self.sh.compile.cache(source, self.sh.execution_count, raw_code=cell)
        code = compile(workflow_source(name, params, source), filename, "exec")
        ns = self.sh.user_ns
        exec(code, ns)
        wf: _workflow.Workflow = _workflow.workflow(ns[name], name=name)
        ns[name] = wf
        return wf

    # --- %nbflow -------------------------------------------------------------
    @line_magic
    def nbflow(self, line: str) -> Any:
        """%nbflow runs | attach [RUN ...] | up | down | status | deploy NAME"""
        words = shlex.split(line)
        command, args = (words[0], words[1:]) if words else ("", [])
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(NBFLOW_USAGE)
        return handler(args)

    def _cmd_runs(self, args: list[str]) -> Any:
        import pandas as pd

        from ..runtime.views import runs_frame

        runtime = _runtime()
        shown = 50
        if "--all" in args:
            metas = list_runs(runtime.redis, limit=shown).runs
        else:
            metas = my_runs(runtime, shown)
        frame: pd.DataFrame = runs_frame(metas)
        return frame

    def _cmd_attach(self, args: list[str]) -> None:
        runtime = _runtime()
        run_ids = args or latest_runs(runtime)
        if not run_ids:
            print("nbflow: no runs of this notebook to attach to")
            return
        for run_id in run_ids:
            run = runtime.attach(run_id)
            set_last(run)
            print(f"nbflow: attached to run {run.id} ({run.status()}): full history, then live")
            view.watch(run)

    def _cmd_up(self, args: list[str]) -> None:
        runtime = _runtime()
        print(f"nbflow runtime up at {runtime.url}: {len(runtime.workers())} live workers")

    def _cmd_down(self, args: list[str]) -> None:
        from ..runtime import embedded, pool
        from ..runtime.client import set_runtime

        stopped_pool, stopped_server = pool.stop_pool(), embedded.stop_server()
        set_runtime(None)
        print(
            f"nbflow: worker pool {'stopped' if stopped_pool else 'was not running'}; "
            f"embedded server {'stopped (data kept)' if stopped_server else 'was not running'}"
        )

    def _cmd_status(self, args: list[str]) -> None:
        runtime = _runtime()
        page = list_runs(runtime.redis, RunQuery(status=IN_FLIGHT), limit=RECENT_RUNS)
        active = f"{len(page.runs)}{'+' if page.next_cursor else ''}"
        print(
            f"runtime  {runtime.url}\n"
            f"workers  {len(runtime.workers())} live\n"
            f"queue    {runtime.queue_depth()} waiting, {active} runs in flight\n"
            f"notebook {scope()}"
        )

    def _cmd_deploy(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError("%nbflow deploy NAME")
        wf = self.sh.user_ns.get(args[0])
        if not isinstance(wf, _workflow.Workflow):
            raise UsageError(f"%nbflow deploy: {args[0]!r} is not a workflow in this notebook")
        digest = wf.deploy()
        print(f"nbflow: deployed {wf.name!r} (code {digest[:12]}); start it by name or over REST")


def run_in_process(wf: _workflow.Workflow, inputs: dict[str, Any], *, show: bool) -> Any:
    """Run ``wf`` in this kernel, shown live; its value, or its error raised here."""
    before = last_run()
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            value = wf(**inputs)
            if asyncio.iscoroutine(value):
                value = asyncio.run(value)
            outcome.append((True, value))
        except BaseException as error:
            outcome.append((False, error))

    thread = threading.Thread(target=target, name=f"nbflow-local-{wf.name}", daemon=True)
    thread.start()
    run = _started_run(before, thread)
    if show and run is not None:
        view.watch(run)
    _join(thread, run)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _started_run(before: Any, thread: threading.Thread) -> Any:
    # run_local publishes the new run through last_run() before running any step.
    deadline = time.monotonic() + LOCAL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        run = last_run()
        if run is not before:
            return run
        if not thread.is_alive():
            return None
        time.sleep(0.001)
    return None


def _join(thread: threading.Thread, run: Any) -> None:
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        if run is not None:
            run.cancel()
        thread.join()
        raise


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(NbflowMagics)
    view.install_hooks(ipython)
