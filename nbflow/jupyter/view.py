"""The live run view: a fold of the run's log on a background thread, shown as a widget.

A ``Follower`` reads the log from the first event (full replay, then live), folds
it with ``RunState.apply`` and hands what changed to its views at most ten times
a second: a small ``summary`` trait, and only the spans that changed since the
last tick as custom messages, so a run with 10,000 spans costs the front end a
few rows per tick. The front end (``static/run_view.js``, plain ESM, no build
step) keeps the spans in a tree it collapses and virtualises.

Where the widget cannot render (no widget manager, a converted notebook) the
display falls back to an HTML snapshot that is replaced in place as the run goes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from redis.exceptions import RedisError

from .. import _events as ev
from .._fold import RunState
from . import display as dsp

TICK_S = 0.1  # at most ten updates a second
HTML_TICK_S = 0.5  # the HTML fallback re-sends the whole snapshot: less often
FALLBACK_AFTER_S = 5.0  # no front end drew the widget by then: switch to HTML
SPANS_PER_MESSAGE = 2_000
OUTPUT_RESYNC_CHARS = 200_000
MAX_RECORDED_IDS = 1_000_000
STATUS_CHECK_S = 2.0
RETRY_S = 1.0
ENV_VIEW = "NBFLOW_VIEW"  # "widget" (default where possible), "html" or "none"
STATIC = Path(__file__).parent / "static"

Tick = dict[str, Any]


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
    return view_mode() == "widget" and kernel_shell() is not None


class Follower:
    """Folds one run's log as it grows and tells listeners what changed, throttled."""

    def __init__(self, run: Any, *, tick_s: float = TICK_S) -> None:
        self.run = run
        self.mode = dsp.mode_of(run)
        self.state = RunState(run.id)
        self.tick_s = tick_s
        self.event_ids: list[str] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.finished = threading.Event()
        self._listeners: list[Callable[[Tick], None]] = []
        self._dirty: set[str] = set()
        self._output: list[str] = []
        self._changed = False
        self._index = 0
        self._quiet_since = time.monotonic()
        self._thread = threading.Thread(
            target=self._loop, name=f"nbflow-view-{run.id}", daemon=True
        )

    def listen(self, listener: Callable[[Tick], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    # --- reading the log ----------------------------------------------------
    def catch_up(self) -> None:
        """Fold everything the log holds now (the replay), without telling listeners."""
        with self.lock:
            self._apply(self._read())

    def _read(self) -> list[ev.Event]:
        if self.mode == "local":
            events: list[ev.Event] = self.run.sink.events
            new = events[self._index :]
            self._index += len(new)
            return new
        return list(self.run.events(after=self.state.last_id, follow=False))

    def _apply(self, events: list[ev.Event]) -> None:
        for event in events:
            kind = event.get("type")
            if kind in (ev.RUN_RESTARTED, *ev.TERMINAL_EVENTS):
                self._dirty.update(
                    s.span_id for s in self.state.spans.values() if s.status == "running"
                )
            self.state.apply(event)
            if len(self.event_ids) < MAX_RECORDED_IDS:
                self.event_ids.append(event.get("id", ""))
            if kind == ev.OUTPUT:
                self._output.append(str(event.get("chunk", "")))
            elif kind == ev.PROGRESS:
                self._clock_step(event)
            elif "span_id" in event:
                self._dirty.add(event["span_id"])
            self._changed = True
        if events and self.state.done:
            self._end_steps(events[-1].get("ts", time.time()))

    def _clock_step(self, event: ev.Event) -> None:
        ts, state = event.get("ts", 0.0), event.get("state", "running")
        if state == "running":
            for step in self.steps.values():
                if step["end"] is None and step["state"] == "running":
                    step["end"] = ts
        step = self.steps.setdefault(event["step"], {"start": ts, "end": None})
        step["state"] = state
        if state in ("done", "failed"):
            step["end"] = step["end"] or ts
        elif state == "running":
            step["end"] = None

    def _end_steps(self, ts: float) -> None:
        for step in self.steps.values():
            step["end"] = step["end"] or ts

    def step(self) -> bool:
        """Fold what is new and tell listeners (the last time with ``final``); True once ended."""
        with self.lock:
            if self.finished.is_set():
                return True
            events = self._read()
            self._apply(events)
            if events:
                self._quiet_since = time.monotonic()
            done = self.state.done or self._expired()
            self._flush(final=done)
            if done:
                self.finished.set()
            return done

    def _loop(self) -> None:
        try:
            while True:
                try:
                    if self.step():
                        return
                except RedisError:  # the runtime is away for a moment: keep the view, retry
                    time.sleep(RETRY_S)
                    continue
                time.sleep(self.tick_s)
        finally:
            self.finished.set()

    def _expired(self) -> bool:
        # A log whose terminal event was trimmed, or a run that expired: stop following.
        if self.mode == "local" or time.monotonic() - self._quiet_since < STATUS_CHECK_S:
            return False
        try:
            return self.run.status() in ("succeeded", "failed", "cancelled")
        except KeyError:
            return True

    # --- telling listeners ----------------------------------------------------
    def _flush(self, *, final: bool) -> None:
        if not (self._changed or final):
            return
        tick: Tick = {
            "summary": self.summary(),
            "spans": [self.span_row(i) for i in self._changed_spans()],
            "output": "".join(self._output),
            "final": final,
        }
        self._dirty.clear()
        self._output.clear()
        self._changed = False
        for listener in self._listeners:
            listener(tick)

    def _changed_spans(self) -> list[str]:
        # Parents before children, so the front end can hang each span under its parent.
        spans = self.state.spans
        changed = [i for i in self._dirty if i in spans]
        return sorted(changed, key=lambda i: (spans[i].depth, spans[i].start))

    def full(self) -> Tick:
        """Everything a newly drawn view needs: every span, and the output's tail."""
        with self.lock:
            return {
                "summary": self.summary(),
                "spans": [self.span_row(i) for i in self.state.spans],
                "output": "".join(self.state.chunks)[-OUTPUT_RESYNC_CHARS:],
                "final": self.state.done,
            }

    def span_row(self, span_id: str) -> dict[str, Any]:
        span = self.state.spans[span_id]
        row = dsp.span_dict(span)
        row.update(
            start=span.start,
            depth=span.depth,
            model=span.model,
            cost_usd=span.cost_usd,
            error=span.error,
        )
        return row

    def summary(self) -> dict[str, Any]:
        s = self.state
        return {
            "run_id": s.run_id,
            "workflow": s.workflow or dsp.workflow_of(self.run),
            "status": s.status,
            "mode": self.mode,
            "reason": s.reason,
            "restarts": s.restarts,
            "created_at": s.created_at,
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "now": time.time(),
            "usage": s.usage(),
            "steps": [
                {
                    "step": name,
                    "state": s.progress[name].state,
                    "detail": _text(s.progress[name].detail),
                    "start": clock["start"],
                    "end": clock["end"],
                }
                for name, clock in self.steps.items()
                if name in s.progress
            ],
            "span_count": len(s.spans),
            "event_count": s.count,
            "last_event_id": s.last_id,
            "error": s.error,
            "error_type": s.error_type,
            "traceback": s.traceback,
            "truncated": s.truncated,
        }

    def data(self) -> dict[str, Any]:
        with self.lock:
            return dsp.run_data(self.state, mode=self.mode, workflow=dsp.workflow_of(self.run))

    def bundle(self) -> dict[str, Any]:
        with self.lock:
            return dsp.bundle(self.data(), traceback=self.state.traceback)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class RunView(anywidget.AnyWidget):
    """The widget: a summary trait, spans and output as incremental custom messages."""

    _esm = STATIC / "run_view.js"
    _css = STATIC / "run_view.css"
    run_id = traitlets.Unicode("").tag(sync=True)
    key = traitlets.Unicode("").tag(sync=True)  # the front end's store of this widget
    summary = traitlets.Dict().tag(sync=True)

    def __init__(self, follower: Follower, **kwargs: Any) -> None:
        super().__init__(
            run_id=follower.run.id, key=uuid.uuid4().hex, summary=follower.summary(), **kwargs
        )
        self.follower = follower
        self.drawn = threading.Event()
        follower.listen(self._tick)
        self.on_msg(self._on_front_end)

    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "sync":
            self.drawn.set()
            with self.follower.lock:
                self._push(self.follower.full(), reset=True)

    def _tick(self, tick: Tick) -> None:
        self._push(tick, reset=False)

    def _push(self, tick: Tick, *, reset: bool) -> None:
        # The summary goes last: a front end that shows a run ended has all of its
        # spans and output (the messages arrive in the order they were sent).
        spans = tick["spans"]
        for start in range(0, max(len(spans), 1 if reset else 0), SPANS_PER_MESSAGE):
            chunk = spans[start : start + SPANS_PER_MESSAGE]
            self.send({"kind": "spans", "spans": chunk, "reset": reset and start == 0})
        if tick["output"] or reset:
            self.send({"kind": "output", "text": tick["output"], "reset": reset})
        self.summary = tick["summary"]


class LiveView:
    """One display of a run: the widget, or an HTML snapshot replaced in place."""

    def __init__(self, run: Any, *, widget: bool | None = None) -> None:
        self.run = run
        self.follower = Follower(run)
        use_widget = widgets_available() if widget is None else widget
        self.widget: RunView | None = RunView(self.follower) if use_widget else None
        self.display_id = f"nbflow-{run.id}-{uuid.uuid4().hex[:8]}"
        self.html_mode = self.widget is None
        self._shown = False
        self._last_html = 0.0
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
        self._last_html = time.monotonic()
        if self.widget is not None:
            self._arm_fallback()
        self.follower.start()
        return self

    def _bundle(self) -> dict[str, Any]:
        data = self.follower.bundle()
        if not self.html_mode and self.widget is not None:
            data[dsp.WIDGET_MIME] = self.mime()
        return data

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
        if tick["final"] or (self.html_mode and time.monotonic() - self._last_html >= HTML_TICK_S):
            self._update()

    def _update(self) -> None:
        from IPython.display import update_display

        self._last_html = time.monotonic()
        update_display(  # type: ignore[no-untyped-call]
            self._bundle(), raw=True, display_id=self.display_id
        )


_hooked: set[int] = set()
_executing = threading.Event()  # a cell is running: front-end messages are queued


def install_hooks(shell: Any) -> None:
    """Show runs through ``watch`` (a live, updatable display) and settle views after each cell.

    Settling folds what is new for every unfinished view before the cell's reply, so
    a run that ended during the cell leaves its final snapshot in that output.
    """
    if id(shell) in _hooked:
        return
    _hooked.add(id(shell))
    formatter = shell.display_formatter.ipython_display_formatter
    formatter.for_type_by_name("nbflow.runtime.client", "Run", _display_run)
    formatter.for_type_by_name("nbflow._local", "LocalRun", _display_run)
    shell.events.register("pre_run_cell", _cell_started)
    shell.events.register("post_run_cell", _settle)


def _cell_started(*_info: Any) -> None:
    _executing.set()


def _display_run(run: Any) -> None:
    watch(run)


def _settle(*_result: Any) -> None:
    _executing.clear()
    for live in views():
        if live._shown and not live.follower.finished.is_set():
            with contextlib.suppress(RedisError):  # its own thread will catch up
                live.follower.step()


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
