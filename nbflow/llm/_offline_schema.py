"""An instance of a JSON schema, filled deterministically from the request's own words.

The offline model answers tool calls and structured-output requests with it. It
covers what OpenAI function and response schemas use (objects, arrays, scalars,
``enum``/``const``, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into ``$defs``,
bounds, lengths and common string formats); a ``pattern`` is not followed.
Strings come from a source the caller chooses (words of the question for tool
arguments, sentences for structured replies); numbers are taken from the
question in order when they fit, so "add 2 and 3" calls ``add(a=2, b=3)``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nbflow.errors import ConfigError
from nbflow.llm._offline_text import Picker

Json = dict[str, Any]

MAX_DEPTH = 5  # recursive schemas stop here with their required fields only
ARRAY_ITEMS = 2
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\w)")
_FORMATS = {
    "date-time": "2025-01-15T09:30:00Z",
    "date": "2025-01-15",
    "time": "09:30:00",
    "duration": "PT1H",
    "email": "someone@example.com",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
}


def numbers_in(text: str) -> list[float]:
    return [float(n) for n in _NUMBER.findall(text)]


class Filler:
    """Builds instances of one (root) schema; ``strings()`` yields the text for string fields."""

    def __init__(
        self,
        root: Json,
        *,
        picker: Picker,
        strings: Callable[[], str],
        numbers: list[float],
        mentioned: Callable[[str], bool],
    ) -> None:
        self.root = root
        self.picker = picker
        self.strings = strings
        self.mentioned = mentioned
        self._numbers: Iterator[float] = iter(numbers)
        self._spare: list[float] = []

    def instance(self) -> Any:
        return self.value(self.root, 0)

    def value(self, schema: Any, depth: int) -> Any:
        schema = self._resolve(schema)
        if not isinstance(schema, Mapping):
            return self.strings() if schema is not False else None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._enum(schema["enum"])
        if "allOf" in schema:
            return self.value(self._merged(schema), depth)
        options = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(options, list) and options:
            return self.value(self._option(options, depth), depth)
        return self._typed(schema, _type_of(schema), depth)

    def _typed(self, schema: Mapping[str, Any], kind: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        if kind == "boolean":
            return self.picker.below(2) == 1
        if kind == "null":
            return None
        return self._string(schema)

    # --- references and combinations -------------------------------------------------
    def _resolve(self, schema: Any) -> Any:
        for _ in range(32):  # a chain of references, never a cycle of them
            if not isinstance(schema, Mapping) or "$ref" not in schema:
                return schema
            target = self._pointer(str(schema["$ref"]))
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if rest and isinstance(target, Mapping) else target
        raise ConfigError("a $ref chain in the schema does not end")

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ConfigError(f"only local $refs are supported, got {ref!r}")
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                raise ConfigError(f"$ref {ref!r} points nowhere in the schema")
            node = node[key]
        return node

    def _merged(self, schema: Mapping[str, Any]) -> Json:
        merged: Json = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self._resolve(part)
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _option(self, options: list[Any], depth: int) -> Any:
        resolved = [self._resolve(o) for o in options]
        nulls = [o for o in resolved if isinstance(o, Mapping) and _type_of(o) == "null"]
        others = [o for o in resolved if not (isinstance(o, Mapping) and _type_of(o) == "null")]
        if depth >= MAX_DEPTH and nulls:
            return nulls[0]
        return (others or nulls)[0]

    def _enum(self, values: list[Any]) -> Any:
        for value in values:
            if isinstance(value, str) and self.mentioned(value):
                return value
        return values[self.picker.below(len(values))]

    # --- shapes ------------------------------------------------------------------------
    def _object(self, schema: Mapping[str, Any], depth: int) -> Json:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        out: Json = {}
        for name, sub in properties.items():
            # Optional fields with a default are left to it, as a model would; past the
            # depth limit only required ones are filled, so recursive schemas end.
            optional = name not in required
            has_default = isinstance(sub, Mapping) and "default" in sub
            if optional and (has_default or depth >= MAX_DEPTH):
                continue
            out[name] = self.value(sub, depth + 1)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        count = low if depth >= MAX_DEPTH else max(low, ARRAY_ITEMS)
        if isinstance(high, int):
            count = min(count, high)
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        values = [
            self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)
        ]
        if schema.get("uniqueItems"):
            values = _distinct(values)
        return values

    def _string(self, schema: Mapping[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            text = _uuid(self.picker)
        elif isinstance(fmt, str) and fmt in _FORMATS:
            text = _FORMATS[fmt]
        else:
            text = self.strings()
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(low, int) and len(text) < low:
            text = (text + " " + "x" * low)[: max(low, len(text))]
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text

    def _number(self, schema: Mapping[str, Any], *, integer: bool) -> int | float:
        low, high = _bounds(schema, integer=integer)
        step = schema.get("multipleOf")

        def fits(n: float) -> bool:
            whole = n == int(n)
            return (whole or not integer) and low <= n <= high and _multiple(n, step)

        found = self._take_number(fits)
        if found is not None:
            return int(found) if integer else found
        if isinstance(step, int | float) and step > 0:
            value = math.ceil(low / step) * step
        else:
            value = low + self.picker.below(int(min(high, low + 99) - low) + 1)
        return int(value) if integer else float(value)

    def _take_number(self, fits: Callable[[float], bool]) -> float | None:
        """The question's next number that fits; one that does not is kept for a later field."""
        for i, n in enumerate(self._spare):
            if fits(n):
                del self._spare[i]
                return n
        for n in self._numbers:
            if fits(n):
                return n
            self._spare.append(n)
        return None


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0]
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float, float]:
    low = schema.get("minimum", -math.inf)
    high = schema.get("maximum", math.inf)
    nudge = 1 if integer else 1e-6
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, schema["exclusiveMinimum"] + nudge)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, schema["exclusiveMaximum"] - nudge)
    if low == -math.inf:
        low = 1 if high >= 1 else high - 99
    if integer:
        low, high = math.ceil(low), math.floor(high) if high != math.inf else high
    return float(low), float(high)


def _multiple(value: float, step: Any) -> bool:
    if not isinstance(step, int | float) or step <= 0:
        return True
    return math.isclose(value / step, round(value / step))


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        while value in seen:
            value = value + 1 if isinstance(value, int | float) else f"{value} {len(seen)}"
        seen.append(value)
    return seen


def _uuid(picker: Picker) -> str:
    digest = hashlib.sha256(str(picker.below(2**32)).encode()).hexdigest()
    d = digest[:32]
    return f"{d[:8]}-{d[8:12]}-4{d[13:16]}-8{d[17:20]}-{d[20:32]}"
