"""What a waiting run waits for, read from its metadata and said in one line.

The run's metadata holds the wait as JSON while the run is ``waiting`` (the same
dict as the ``run.waiting`` event's ``wait``): listings (``nbflow runs``,
``nf.runs()``, the REST API's ``GET /runs``) read it from there, without the log.
"""

from __future__ import annotations

import json
import time
from typing import Any

MAX_PROMPT_CHARS = 80  # a listing shows the prompt's start
FIELD_TYPES = ("boolean", "integer", "number", "string")


def wait_of(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The wait of a ``waiting`` run (None for any other status, or an unreadable one)."""
    if meta.get("status") != "waiting":
        return None
    raw = meta.get("wait")
    if isinstance(raw, dict):
        return raw
    try:
        wait = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        return None
    return wait if isinstance(wait, dict) else None


def describe_wait(wait: dict[str, Any] | None) -> str:
    """One line: ``input 'approve': Publish this draft?``, ``timer until 14:05:00``,
    ``3 child runs``; empty for no wait."""
    if not wait:
        return ""
    kind = wait.get("kind")
    if kind == "input":
        prompt = _short(str(wait.get("prompt") or ""))
        text = f"input {wait.get('name')!r}" + (f": {prompt}" if prompt else "")
        return text + _deadline(wait.get("until"), "answer by")
    if kind == "sleep":
        return "timer" + _deadline(wait.get("until"), "until")
    if kind == "children":
        runs = wait.get("runs")
        count = len(runs) if isinstance(runs, list) else 0
        return f"{count} child run{'' if count == 1 else 's'}"
    return str(kind or "")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PROMPT_CHARS else text[: MAX_PROMPT_CHARS - 1] + "…"


def _deadline(until: Any, word: str) -> str:
    if not isinstance(until, int | float):
        return ""
    same_day = time.localtime(until)[:3] == time.localtime()[:3]
    shown = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(until))
    return f" ({word} {shown})" if word == "answer by" else f" {word} {shown}"


def field_kind(schema: dict[str, Any] | None) -> str:
    """The form field that answers a wait for input with this JSON schema: ``boolean``
    (yes/no), ``enum`` (a choice), ``integer``, ``number``, ``string``, or ``json`` (a
    JSON text) for anything else; as extension/src/waits.ts ``fieldKind`` decides."""
    if not schema:
        return "json"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return "enum"
    declared = schema.get("type")
    types = [t for t in (declared if isinstance(declared, list) else [declared]) if t != "null"]
    if len(types) == 1 and types[0] in FIELD_TYPES:
        return str(types[0])
    return "json"
