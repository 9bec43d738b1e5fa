"""A workflow shipped by value is pickled again exactly when something its pickle reads changed."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest

import nbflow as nf
from nbflow import constants as c
from nbflow.runtime import codeship
from nbflow.runtime.client import Runtime
from nbflow.runtime.codestate import CodeState

SETTINGS: dict[str, Any] = {"greeting": "hello", "tags": ["a"]}
LIMIT: Any = 1
LATER_NAME = "LATER"


class Custom:
    """Pickles itself its own way: changes to it cannot be seen by comparing attributes."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> Any:
        return (Custom, (self.value,))


CUSTOM = Custom(1)


def make_workflow() -> nf.Workflow:
    """Functions defined in a function travel by value, as a notebook's do; the module
    globals they read (SETTINGS, LIMIT) travel with them."""

    @nf.component
    def label(text: str) -> str:
        return f"{SETTINGS['greeting']} {text} {SETTINGS['tags']}"

    @nf.workflow
    def greet(name: str) -> str:
        return label(name) * LIMIT

    return greet


def pickled(wf: nf.Workflow) -> bytes:
    return cloudpickle.dumps(wf, codeship.PROTOCOL)


def state_of(wf: Any) -> CodeState:
    state = CodeState.of(wf)
    assert state is not None
    return state


@pytest.fixture
def restore() -> Iterator[None]:
    global LIMIT
    saved, limit = {"greeting": SETTINGS["greeting"], "tags": list(SETTINGS["tags"])}, LIMIT
    yield
    SETTINGS.clear()
    SETTINGS.update(saved)
    LIMIT = limit
    globals().pop(LATER_NAME, None)


def test_nothing_changed_is_unchanged_and_pickles_the_same() -> None:
    wf = make_workflow()
    before, state = pickled(wf), state_of(wf)
    assert all(state.unchanged() for _ in range(3))
    assert pickled(wf) == before


def _rebind_global() -> None:
    global LIMIT
    LIMIT = 2


def _equal_but_not_identical() -> None:
    global LIMIT
    LIMIT = True  # == 1, but pickles differently


def _mutate_dict() -> None:
    SETTINGS["greeting"] = "bye"


def _mutate_nested_list() -> None:
    SETTINGS["tags"].append("b")


def _add_key() -> None:
    SETTINGS["extra"] = 1


@pytest.mark.parametrize(
    "change",
    [_rebind_global, _equal_but_not_identical, _mutate_dict, _mutate_nested_list, _add_key],
)
def test_a_change_to_a_global_a_component_reads_is_seen(
    restore: None, change: Callable[[], None]
) -> None:
    wf = make_workflow()
    before, state = pickled(wf), state_of(wf)
    change()
    assert not state.unchanged()
    assert pickled(wf) != before


def test_a_global_defined_after_the_pickle_is_seen(restore: None) -> None:
    @nf.workflow
    def uses_later() -> Any:
        return LATER  # type: ignore[name-defined]  # noqa: F821

    state = state_of(uses_later)
    globals()[LATER_NAME] = 5
    assert not state.unchanged()


def test_closure_cells_defaults_and_code_are_seen() -> None:
    count = 0

    def bump(step: int = 1) -> int:
        return count + step

    @nf.workflow
    def counter() -> int:
        return bump()

    state = state_of(counter)
    count = 1
    assert not state.unchanged()
    state = state_of(counter)
    bump.__defaults__ = (2,)
    assert not state.unchanged()
    state = state_of(counter)
    bump.__code__ = (lambda step=1: count - step).__code__
    assert not state.unchanged()
    state = state_of(counter)
    bump.note = "x"  # type: ignore[attr-defined]
    assert not state.unchanged()


def test_what_cannot_be_followed_has_no_state() -> None:
    @nf.workflow
    def custom() -> int:
        return CUSTOM.value

    class Local:
        pass

    @nf.workflow
    def local_class() -> Any:
        return Local

    assert CodeState.of(custom) is None
    assert CodeState.of(local_class) is None


def test_random_edits_never_leave_a_changed_pickle_called_unchanged(restore: None) -> None:
    """Whenever the state says unchanged, a fresh pickle is byte for byte the old one."""
    global LIMIT
    rng = random.Random(7)
    wf = make_workflow()
    edits: list[Callable[[], None]] = [
        lambda: SETTINGS.__setitem__("greeting", rng.choice(["hello", "hi"])),
        lambda: SETTINGS["tags"].append("c") if rng.random() < 0.5 else None,
        lambda: globals().__setitem__("LIMIT", rng.choice([1, 2, True, LIMIT])),
        lambda: SETTINGS["tags"].pop() if len(SETTINGS["tags"]) > 1 else None,
    ]
    unchanged_seen = changed_seen = 0
    for _ in range(200):
        before, state = pickled(wf), state_of(wf)
        rng.choice(edits)()
        if state.unchanged():
            unchanged_seen += 1
            assert pickled(wf) == before
        else:
            changed_seen += 1
    assert unchanged_seen > 10 and changed_seen > 10


def test_runtime_pickles_an_unchanged_workflow_once_and_an_edited_one_again(
    runtime: Runtime,
    worker: Callable[..., Any],
    restore: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packed: list[Any] = []
    pack = codeship.pack

    def counting(obj: Any, secret: bytes, binding: codeship.Binding) -> bytes:
        packed.append(binding.role)
        return pack(obj, secret, binding)

    monkeypatch.setattr(codeship, "pack", counting)
    worker()
    wf = make_workflow()
    first = [wf.submit("ann") for _ in range(3)]
    assert packed.count("code") == 1
    SETTINGS["greeting"] = "bye"
    edited = wf.submit("bob")
    assert packed.count("code") == 2
    assert [run.result(timeout_s=20) for run in first] == ["hello ann ['a']"] * 3
    assert edited.result(timeout_s=20) == "bye bob ['a']"
    assert len(runtime.redis.keys(c.CODE_KEY.format(digest="*"))) == 2


def test_a_submodule_imported_after_the_pickle_is_seen() -> None:
    """A function that uses a package takes along its imported submodules that it names."""
    import importlib
    import xmlrpc

    if "xmlrpc.server" in sys.modules:
        pytest.skip("xmlrpc.server is imported already")

    @nf.workflow
    def serve() -> Any:
        return xmlrpc.server.SimpleXMLRPCServer  # type: ignore[attr-defined]  # not yet imported: the point

    state = state_of(serve)
    importlib.import_module("xmlrpc.server")
    assert not state.unchanged()
