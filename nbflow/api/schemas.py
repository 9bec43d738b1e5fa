"""A workflow's input as a pydantic model, derived once from its signature and type hints.

Parameters without a hint accept any JSON value; hinted ones take only JSON
values of their type (no coercion: ``"2"`` is not an ``int``). Model fields get neutral names
(``p0``, ``p1``, ...) with the parameter as alias, so that a parameter called
``json`` or ``model_config`` cannot clash with pydantic's own attributes.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .errors import field_errors, invalid_input

Kwargs = dict[str, Any]


@dataclass(frozen=True)
class InputModel:
    model: type[BaseModel]
    aliases: dict[str, str]  # model field -> parameter name

    @property
    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    def validate(self, data: Any) -> Kwargs:
        """The keyword arguments to start the run with; 422 naming every bad field.

        Strict, as JSON: a JSON value of the wrong type is refused, not converted
        (``"2"`` and ``true`` are not an ``int``; ``2`` is a ``float``, and an ISO
        string a ``datetime``, since JSON has no other way to say them).
        """
        try:
            parsed = self.model.model_validate_json(json.dumps(data), strict=True)
        except ValidationError as error:
            raise invalid_input(field_errors(error.errors(), prefix=("input",))) from None
        given = parsed.model_fields_set & self.aliases.keys()
        kwargs = {self.aliases[f]: getattr(parsed, f) for f in given}
        return {**kwargs, **(parsed.model_extra or {})}


def input_model(name: str, fn: Callable[..., Any]) -> InputModel:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return any_input(name)
    hints = _hints(fn)
    fields: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    takes_extra = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            takes_extra = True
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue  # *args cannot be given by name; **kwargs is the extra above
        field = f"p{len(fields)}"
        fields[field] = (_annotation(hints.get(param.name, Any)), _field(param))
        aliases[field] = param.name
    config = ConfigDict(extra="allow" if takes_extra else "forbid", title=f"{name} input")
    model = create_model(f"{_identifier(name)}_input", __config__=config, **fields)
    return InputModel(model, aliases)


def any_input(name: str) -> InputModel:
    config = ConfigDict(extra="allow", title=f"{name} input")
    return InputModel(create_model(f"{_identifier(name)}_input", __config__=config), {})


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        # Shipped notebook code may name types its module no longer has; resolve what can be.
        return {k: _resolve(v, fn) for k, v in getattr(fn, "__annotations__", {}).items()}


def _resolve(annotation: Any, fn: Callable[..., Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(
            annotation, getattr(fn, "__globals__", {})
        )  # the workflow's own code, already trusted
    except Exception:
        return Any


def _annotation(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return Any
    try:
        TypeAdapter(annotation).json_schema()
    except Exception:
        return Any  # a type pydantic cannot validate or describe: accept any JSON
    return annotation


def _field(param: inspect.Parameter) -> Any:
    if param.default is param.empty:
        return Field(alias=param.name)
    if _is_json(param.default):
        return Field(default=param.default, alias=param.name)
    return Field(default=None, alias=param.name, json_schema_extra=_drop_default)


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name) or "workflow"
