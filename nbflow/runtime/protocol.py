"""Encoding of events and run metadata in Redis."""

from __future__ import annotations

import json
from typing import Any

from .._events import Event

META_FLOATS = ("created_at", "started_at", "ended_at", "cost_usd")
META_INTS = ("attempts", "restarts", "input_tokens", "output_tokens", "total_tokens", "llm_calls")
META_JSON = ("input", "output", "progress")
META_BLOBS = ("args", "result")
# One encoder for every call (json.dumps with options builds a new one each time).
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def encode_event(event: Event) -> str:
    return _JSON.encode({k: v for k, v in event.items() if k != "id"})


def fit_event(event: Event, max_bytes: int) -> str:
    """The event encoded, its largest fields cut (with a marker) until it fits ``max_bytes``."""
    text = encode_event(event)
    if len(text) <= max_bytes:  # characters <= bytes: only a long text needs a closer look
        return text
    size = len(text.encode())
    if size <= max_bytes:
        return text
    cut = {k: v for k, v in event.items() if k != "id"}
    sizes = sorted(((len(_JSON.encode(v)), k) for k, v in cut.items()), reverse=True)
    for field_size, key in sizes:
        if key in ("type", "ts", "span_id"):
            continue
        keep = max(0, field_size - (size - max_bytes) - 200) // 4  # chars: up to 4 bytes each
        shown = _JSON.encode(cut[key]) if not isinstance(cut[key], str) else cut[key]
        cut[key] = f"{shown[:keep]}… [cut: {field_size} bytes over the event limit]"
        cut["cut"] = [*cut.get("cut", []), key]
        text = _JSON.encode(cut)
        size = len(text.encode())
        if size <= max_bytes:
            break
    return text


def decode_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    raw = fields.get(b"e")
    event_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    try:
        event: Event = json.loads(raw) if raw is not None else {}
    except ValueError:
        event = {}
    if not isinstance(event, dict) or "type" not in event:
        event = {"type": "invalid", "ts": 0.0, "raw": repr(fields)[:200]}
    event["id"] = event_id
    return event


def decode_meta(raw: dict[bytes, bytes]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key_b, value_b in raw.items():
        key = key_b.decode()
        if key in META_BLOBS:
            continue
        value = value_b.decode(errors="replace")
        meta[key] = _convert(key, value)
    return meta


def _convert(key: str, value: str) -> Any:
    try:
        if key in META_FLOATS:
            return float(value)
        if key in META_INTS:
            return int(value)
        if key in META_JSON:
            return json.loads(value)
    except ValueError:
        return value
    return value


def dumps(value: Any) -> str:
    return _JSON.encode(value)
