"""A workflow's input schema and validation, from its signature and type hints."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pytest

from nbflow.api.errors import ApiError
from nbflow.api.schemas import input_model


class Thing:  # a type pydantic cannot describe
    pass


def _fields(error: ApiError) -> list[str]:
    return [f["field"] for f in error.extra["fields"]]


def test_hints_become_the_schema_and_defaults_stay_optional() -> None:
    def fn(topic: str, n: int = 3, when: dt.date | None = None) -> None: ...

    model = input_model("fn", fn)
    schema = model.json_schema
    assert schema["required"] == ["topic"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["n"] == {"default": 3, "title": "N", "type": "integer"}
    assert model.validate({"topic": "t", "when": "2024-05-01"}) == {
        "topic": "t",
        "when": dt.date(2024, 5, 1),
    }


def test_only_given_arguments_are_passed_so_the_function_keeps_its_defaults() -> None:
    def fn(a: int, b: list[int] = [], c: Any = object()) -> None: ...  # noqa: B006, B008

    model = input_model("fn", fn)
    assert model.validate({"a": 1}) == {"a": 1}
    assert "default" not in model.json_schema["properties"]["c"]


def test_unhinted_parameters_accept_any_json() -> None:
    def fn(a, b=2): ...

    model = input_model("fn", fn)
    assert model.validate({"a": {"deep": [1, None]}}) == {"a": {"deep": [1, None]}}
    with pytest.raises(ApiError) as missing:
        model.validate({})
    assert _fields(missing.value) == ["input.a"]


def test_parameter_names_that_clash_with_pydantic_are_fine() -> None:
    def fn(json: str, model_config: int = 0, schema: bool = False) -> None: ...

    model = input_model("fn", fn)
    assert set(model.json_schema["properties"]) == {"json", "model_config", "schema"}
    assert model.validate({"json": "x", "model_config": 2}) == {"json": "x", "model_config": 2}


def test_var_keyword_accepts_extra_names_and_var_positional_is_skipped() -> None:
    def fn(a: int, *rest: int, **more: Any) -> None: ...

    model = input_model("fn", fn)
    assert model.validate({"a": 1, "other": [1]}) == {"a": 1, "other": [1]}


@pytest.mark.parametrize("given", ["2", True, 2.0, 2.5, None])
def test_an_int_takes_only_a_json_integer(given: Any) -> None:
    def fn(n: int) -> None: ...

    with pytest.raises(ApiError) as bad:
        input_model("fn", fn).validate({"n": given})
    assert _fields(bad.value) == ["input.n"]


def test_strict_still_reads_what_json_can_only_say_one_way() -> None:
    def fn(
        ratio: float, when: dt.datetime, pair: tuple[int, str], mode: Literal["a", "b"]
    ) -> None: ...

    kwargs = input_model("fn", fn).validate(
        {"ratio": 2, "when": "2024-05-01T12:00:00Z", "pair": [1, "x"], "mode": "b"}
    )
    assert kwargs == {
        "ratio": 2.0,
        "when": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
        "pair": (1, "x"),
        "mode": "b",
    }


def test_unknown_names_and_undescribable_types_fall_back_to_any() -> None:
    def fn(a: Thing, b: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    model = input_model("fn", fn)
    assert model.json_schema["properties"]["a"] == {"title": "A"}
    assert model.validate({"a": 1, "b": "x"}) == {"a": 1, "b": "x"}


def test_every_bad_field_is_named() -> None:
    def fn(n: int, tags: list[str], inner: dict[str, int]) -> None: ...

    with pytest.raises(ApiError) as bad:
        input_model("fn", fn).validate({"n": "x", "tags": ["a", 2], "inner": {"k": "v"}, "zz": 1})
    assert bad.value.status == 422
    assert _fields(bad.value) == ["input.n", "input.tags.1", "input.inner.k", "input.zz"]
