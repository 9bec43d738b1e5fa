"""Stream ids: the one parser every reader of a run's log uses."""

from __future__ import annotations

import pytest

import nbflow as nf
from nbflow._events import parse_id

from .conftest import last_run


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0", (0, 0)),
        ("0-0", (0, 0)),
        ("1718000000000-3", (1718000000000, 3)),
        ("9999999999999999999-9999999999999999999", (9999999999999999999, 9999999999999999999)),
    ],
)
def test_well_formed_ids_parse_to_ms_and_seq(text: str, position: tuple[int, int]) -> None:
    assert parse_id(text) == position


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1-",
        "-1",
        "1-2-3",
        " 1",
        "1\n",
        "+1",
        "1_0",
        "\u0661",  # an Arabic-Indic digit: int() would take it, Redis would not
        "$",
        "10000000000000000000",  # 20 digits: past what a 64-bit part holds
        "1-10000000000000000000",
        "9" * 4300,
    ],
)
def test_malformed_ids_are_config_errors_that_quote_the_id(text: str) -> None:
    expected = r"not a stream id: .* \(expected '<ms>-<seq>' or '0'\)"
    with pytest.raises(nf.ConfigError, match=expected):
        parse_id(text)


def test_a_malformed_id_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_id("1-")


def test_ids_order_numerically_not_as_text() -> None:
    assert parse_id("10-0") > parse_id("9-5") > parse_id("9")


def test_a_local_runs_events_after_a_malformed_id_is_a_config_error() -> None:
    @nf.workflow
    def hello() -> str:
        return "hi"

    hello()
    run = last_run()
    assert run is not None
    assert [e["type"] for e in run.events(after="0")][-1] == "run.succeeded"
    with pytest.raises(nf.ConfigError, match="not a stream id: '1-2-3'"):
        list(run.events(after="1-2-3"))
