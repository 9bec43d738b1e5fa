"""JSON-safe previews of inputs and outputs recorded in spans.

Values are cut past ``MAX_PREVIEW_CHARS`` so that one huge argument cannot bloat
a run's log; secrets named in ``redact`` never reach the log at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .constants import MAX_PREVIEW_CHARS, REDACTED

MAX_ITEMS = 50
_MAX_DEPTH = 6
# Tuples, not unions: isinstance(v, int | float) builds the union on every call, and a
# preview is made of every span's input and output.
_NUMBERS = (bool, int, float)
_AS_IS = frozenset({bool, int, float, type(None)})  # exact types a preview keeps unchanged
_SEQUENCES = (list, tuple, set, frozenset)
_NOTHING: frozenset[str] = frozenset()


def preview(value: Any, *, redact: Iterable[str] = (), max_chars: int = MAX_PREVIEW_CHARS) -> Any:
    """A JSON-safe copy of ``value``, truncated and with ``redact`` keys hidden."""
    if type(value) in _AS_IS:  # most outputs: the cheapest answer first
        return value
    return _preview(value, frozenset(redact) if redact else _NOTHING, max_chars, 0)


def fresh_preview(bound: dict[str, Any], redact: tuple[str, ...]) -> Any:
    """``preview(bound, redact=redact)`` of a dict made for this call and never changed
    after: when its preview would be an equal copy (plain values, no secrets), the dict
    itself. Strings and the other values kept as they are cannot change, so it shows
    the call's arguments as they were."""
    if redact or len(bound) > MAX_ITEMS:
        return preview(bound, redact=redact)
    for value in bound.values():
        kind = type(value)
        if kind not in _AS_IS and (kind is not str or len(value) > MAX_PREVIEW_CHARS):
            return _preview_mapping(bound, _NOTHING, MAX_PREVIEW_CHARS, 0)
    return bound


def _preview(value: Any, redact: frozenset[str], max_chars: int, depth: int) -> Any:
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict and depth < _MAX_DEPTH:  # (an ABC check costs more than the rest)
        return _preview_mapping(value, redact, max_chars, depth)
    if isinstance(value, _NUMBERS):  # subclasses (None was kept above)
        return value
    if isinstance(value, str):
        return truncate(value, max_chars)
    if depth >= _MAX_DEPTH:
        return truncate(_repr(value), max_chars)
    if isinstance(value, Mapping):
        return _preview_mapping(value, redact, max_chars, depth)
    if isinstance(value, _SEQUENCES):
        items = [_preview(v, redact, max_chars, depth + 1) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"… +{len(value) - MAX_ITEMS} more")
        return items
    return truncate(_repr(value), max_chars)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"


def _preview_mapping(
    value: Mapping[Any, Any], redact: frozenset[str], max_chars: int, depth: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (k, v) in enumerate(value.items()):
        if i == MAX_ITEMS:
            out["…"] = f"+{len(value) - MAX_ITEMS} more"
            break
        key = k if type(k) is str else str(k)
        if key in redact:
            out[key] = REDACTED
        elif type(v) in _AS_IS:
            out[key] = v
        else:
            out[key] = _preview(v, redact, max_chars, depth + 1)
    return out


def truncate(text: str, max_chars: int = MAX_PREVIEW_CHARS) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… [+{len(text) - max_chars} chars]"
