"""The live run view: a run's ``Follower`` shown as a widget, or as HTML where none draws.

The widget is the JupyterLab extension's own run viewer (the trace view of the
runs panel, the output renderer and ``/ui``), bundled as an ES module that
anywidget loads (``labextension/ui/widget.js``, built with the extension and
shipped in the wheel). The kernel is its transport: it sends the run's events as
it folds them, and the viewer folds them with its own fold. Where the widget
cannot render (no widget manager, a converted notebook, a source install without
Node.js, so without the bundle) the display falls back to an HTML snapshot that
is replaced in place as the run goes. Where nbflow's JupyterLab renderer draws the
output from the server instead, it says so (a key in Redis), and the kernel stops
following the run until it ends.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from typing import Any

import anywidget
import traitlets
from redis.exceptions import RedisError

from .. import constants as c
from .._assets import viewer_dir
from .._fold import RunState
from ..errors import NbflowError
from . import display as dsp
from .follower import Follower, Tick

HTML_TICK_S = 0.5  # the HTML fallback re-sends the whole snapshot: less often
FALLBACK_AFTER_S = 5.0  # no front end drew the widget by then: switch to HTML
OWNER_CHECK_S = 2.0  # how often a view asks whether a renderer draws its output
EVENTS_PER_MESSAGE = 5_000
ENV_VIEW = "NBFLOW_VIEW"  # "widget" (default where possible), "html" or "none"
ASSETS = viewer_dir("widget.js")


def kernel_shell() -> Any:
    """The IPython shell when this process is a Jupyter kernel (it can update displays)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None


def view_mode() -> str:
    return os.environ.get(ENV_VIEW, "widget").lower()


def widgets_available() -> bool:
    return view_mode() == "widget" and ASSETS is not None and kernel_shell() is not None


class RunView(anywidget.AnyWidget):
    """The widget: the viewer bundle, fed the run's events as custom messages."""

    _esm = ASSETS / "widget.js" if ASSETS else "export default {};"
    _css = ASSETS / "viewer.css" if ASSETS else ""
    run_id = traitlets.Unicode("").tag(sync=True)
    mode = traitlets.Unicode("").tag(sync=True)  # "runtime" runs can be cancelled from it

    def __init__(self, follower: Follower, **kwargs: Any) -> None:
        super().__init__(run_id=follower.run.id, mode=follower.mode, **kwargs)
        self.follower = follower
        self.drawn = threading.Event()
        follower.listen(self._tick)
        self.on_msg(self._on_front_end)

    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "sync":
            self.drawn.set()
            self._replay(str(content.get("token")))
        elif kind == "input":
            self.send(answer(self.follower.run, content))
        elif kind == "cancel":
            self.send(cancel(self.follower.run, content))

    def _replay(self, token: str) -> None:
        # Under the lock, after telling every view what is new: the replay holds every
        # event told so far, and the next tick starts where it ends.
        follower = self.follower
        with follower.lock:
            with contextlib.suppress(RedisError):
                follower.step()
            events = follower.replay()
            for start in range(0, max(len(events), 1), EVENTS_PER_MESSAGE):
                done = start + EVENTS_PER_MESSAGE >= len(events)
                chunk = events[start : start + EVENTS_PER_MESSAGE]
                self.send({"kind": "events", "events": chunk, "replay": token, "done": done})

    def _tick(self, tick: Tick) -> None:
        events = tick["events"]
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            self.send({"kind": "events", "events": events[start : start + EVENTS_PER_MESSAGE]})


def answer(run: Any, content: dict[str, Any]) -> dict[str, Any]:
    """Send the form's answer to the run; the reply the form shows (its error, if any)."""
    reply: dict[str, Any] = {"kind": "input_result", "token": content.get("token")}
    if not hasattr(run, "send_input"):
        reply["error"] = "an in-process run takes no input"
        return reply
    try:
        run.send_input(str(content.get("name")), content.get("value"))
    except NbflowError as error:  # refused, an unknown run, no runtime: said as it is
        reply["error"] = str(error)
    except RedisError as error:
        reply["error"] = f"the runtime cannot be reached: {error}"
    return reply


def cancel(run: Any, content: dict[str, Any]) -> dict[str, Any]:
    """Cancel the run (the widget's Cancel button); the reply says what went wrong, if anything."""
    reply: dict[str, Any] = {"kind": "cancel_result", "token": content.get("token")}
    try:
        run.cancel()
    except NbflowError as error:
        reply["error"] = str(error)
    except RedisError as error:
        reply["error"] = f"the runtime cannot be reached: {error}"
    return reply


class LiveView:
    """One display of a run: the widget, or an HTML snapshot replaced in place."""

    def __init__(self, run: Any, *, widget: bool | None = None) -> None:
        self.run = run
        self.follower = Follower(run)
        use_widget = widgets_available() if widget is None else widget
        self.widget: RunView | None = RunView(self.follower) if use_widget else None
        self.display_id = f"nbflow-{run.id}-{uuid.uuid4().hex[:8]}"
        self.view_key = uuid.uuid4().hex  # what a renderer drawing this output names it by
        self.html_mode = self.widget is None
        self.drawn_elsewhere = False  # a renderer draws this output from the server
        self._shown = False
        self._final_pending = False  # the final bundle went out while no cell ran
        self._undecided = False  # ended in the cell that showed it, its widget not drawn yet
        self._cell = 0  # the cell that showed it (cells started in this process)
        self._last_html = 0.0
        self._owner_checked = 0.0
        self.follower.paused = self._paused
        self.follower.listen(self._tick)
        _register(self)

    def __repr__(self) -> str:
        kind = "html" if self.html_mode else "widget"
        return f"<nbflow live view of run {self.run.id} ({kind}, {self.follower.state.status})>"

    @property
    def state(self) -> RunState:
        return self.follower.state

    @property
    def event_ids(self) -> list[str]:
        return self.follower.event_ids

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the view has seen the run end; False on time-out."""
        return self.follower.finished.wait(timeout_s)

    def mime(self) -> dict[str, Any]:
        assert self.widget is not None
        data: dict[str, Any] = {
            "version_major": 2,
            "version_minor": 1,
            "model_id": self.widget.model_id,
        }
        return data

    def start(self) -> LiveView:
        self.follower.catch_up()
        self.follower.start()
        return self

    def show(self) -> LiveView:
        """Display the run now (its replayed state), then keep the display live."""
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:  # plain Python: a line of text, the view still follows
            self.follower.catch_up()
            print(self.follower.bundle()["text/plain"])
            self.follower.start()
            return self
        shell = kernel_shell()
        if shell is not None:
            install_hooks(shell)
        self.follower.catch_up()
        display(self._bundle(), raw=True, display_id=self.display_id)  # type: ignore[no-untyped-call]
        self._shown = True
        self._cell = _cells[0]
        self._last_html = time.monotonic()
        if self.widget is not None:
            self._arm_fallback()
        self.follower.start()
        return self

    def _bundle(self) -> dict[str, Any]:
        data = self.follower.bundle()
        if self.follower.mode == "runtime":
            data[dsp.MIME]["view"] = self.view_key
        if not self.html_mode and self.widget is not None:
            data[dsp.WIDGET_MIME] = self.mime()
        return data

    def _paused(self) -> bool:
        """True while a renderer draws this output from the server and no widget view of it
        is drawn here: then neither its events nor HTML snapshots need sending."""
        if self.widget is not None and self.widget.drawn.is_set():
            return False
        return self._drawn_elsewhere()

    def _drawn_elsewhere(self) -> bool:
        if self.drawn_elsewhere or self.follower.mode != "runtime":
            return self.drawn_elsewhere
        now = time.monotonic()
        if now - self._owner_checked >= OWNER_CHECK_S:
            self._owner_checked = now
            key = c.OUTPUT_DRAWN.format(view=self.view_key)
            with contextlib.suppress(RedisError):
                self.drawn_elsewhere = bool(self.run.runtime.redis.exists(key))
        return self.drawn_elsewhere

    def _arm_fallback(self) -> None:
        timer = threading.Timer(FALLBACK_AFTER_S, self._fall_back_unless_drawn)
        timer.daemon = True
        timer.start()

    def _fall_back_unless_drawn(self) -> None:
        # A front end that loads the widget asks for its spans ("sync"). While a cell
        # runs that request waits in the kernel's queue, so decide only when idle.
        if self.widget is None or self.widget.drawn.is_set():
            return
        if _executing.is_set():
            self._arm_fallback()
            return
        self.html_mode = True
        self._update()

    def _tick(self, tick: Tick) -> None:
        if not self._shown or kernel_shell() is None:
            return
        if tick["final"]:
            self._send_final()
        elif self.html_mode and not self.drawn_elsewhere and self._html_due():
            self._update()

    def _html_due(self) -> bool:
        return time.monotonic() - self._last_html >= HTML_TICK_S

    def _send_final(self) -> None:
        # A display update belongs to the cell running when it is sent; one sent while
        # none runs is dropped by nbclient (and by front ends that route updates by
        # cell), so the next cell's end sends it again: the saved output is the end.
        # A widget no front end drew is left out of it: converted and saved notebooks
        # (nbconvert, GitHub) would show that instead of the snapshot, as nothing. A
        # front end asks for its widget's spans as soon as it draws it, and the kernel
        # reads that request before the next cell: if a cell started since the display,
        # nobody drew it. In the cell that showed it the request may still wait in the
        # queue: the next cell decides (see _cell_started).
        if self.widget is not None and not self.widget.drawn.is_set():
            if _cells[0] > self._cell:
                self.html_mode = True
            else:
                self._undecided = True
        with _delivery:
            self._update()
            self._final_pending = not _executing.is_set()

    def _update(self) -> None:
        from IPython.display import update_display

        self._last_html = time.monotonic()
        update_display(  # type: ignore[no-untyped-call]
            self._bundle(), raw=True, display_id=self.display_id
        )


_hooked: set[int] = set()
_executing = threading.Event()  # a cell is running: front-end messages are queued
_cells = [0]  # how many cells started in this process
_delivery = threading.RLock()  # a final update is sent and marked in one step


def install_hooks(shell: Any) -> None:
    """Show runs through ``watch`` (a live, updatable display) and settle views after each cell.

    Settling folds what is new for every unfinished view before the cell's reply, so
    a run that ended during the cell leaves its final snapshot in that output, and
    sends again the final snapshot of a run that ended while no cell ran.
    """
    if id(shell) in _hooked:
        return
    _hooked.add(id(shell))
    # By name: the run classes import this module to display themselves. A test checks
    # that these names are the real classes'.
    formatter = shell.display_formatter.ipython_display_formatter
    formatter.for_type_by_name("nbflow.runtime.run", "Run", _display_run)
    formatter.for_type_by_name("nbflow._local", "LocalRun", _display_run)
    shell.events.register("pre_run_cell", _cell_started)
    shell.events.register("post_run_cell", _settle)


def _cell_started(*_info: Any) -> None:
    _cells[0] += 1
    _executing.set()
    for live in views():
        if live._undecided and live.widget is not None and not live.widget.drawn.is_set():
            live.html_mode = live._final_pending = True  # this cell's end sends the snapshot
        live._undecided = False


def _display_run(run: Any) -> None:
    watch(run)


def _settle(*_result: Any) -> None:
    shown = [live for live in views() if live._shown]
    for live in shown:
        if not live.follower.finished.is_set():
            with contextlib.suppress(RedisError):  # its own thread will catch up
                live.follower.step()
    # Not held while a follower steps: a follower's last tick takes this lock while it
    # holds its own. The views resent here have ended: no thread holds their locks.
    with _delivery:
        for live in shown:
            if live._final_pending:
                live._final_pending = False
                live._update()
        _executing.clear()


_views: list[LiveView] = []
_views_lock = threading.Lock()
MAX_KEPT_VIEWS = 100


def _register(view: LiveView) -> None:
    with _views_lock:
        _views.append(view)
        del _views[:-MAX_KEPT_VIEWS]


def views() -> list[LiveView]:
    """The live views this process made, oldest first (the last 100)."""
    with _views_lock:
        return list(_views)


def watch(run: Any, *, widget: bool | None = None) -> LiveView:
    """Show ``run`` live in the current output (widget, or updating HTML) and return the view."""
    if view_mode() == "none":
        return LiveView(run, widget=False).start()
    return LiveView(run, widget=widget).show()


def live_widget(run: Any) -> LiveView:
    """A started widget view for a ``_repr_mimebundle_`` that the caller displays."""
    return LiveView(run, widget=True).start()


def mimebundle(run: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """A run's ``_repr_mimebundle_``: the snapshot, plus the live widget in a kernel."""
    data, _state = dsp.run_bundle(run)
    shell = kernel_shell()
    if shell is not None:
        install_hooks(shell)
    if widgets_available():
        data[dsp.WIDGET_MIME] = live_widget(run).mime()
    return data
