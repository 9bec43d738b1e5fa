"""What a workflow's by-value pickle was made from, and whether all of it is still the same.

A workflow defined in a notebook travels by value, so that the notebook's edits
to the globals it uses reach the next run. Pickling it again at every submit
costs more than the rest of the submit; instead, the first pickle also takes a
``CodeState``: every object the pickle reads that can change in place (a
function's code, defaults, closure cells and the globals its code names, a
component's attributes, a list, a dict), with the exact objects it held. A later
submit compares those (by identity, not equality: ``1`` and ``True`` are equal
but pickle differently) and pickles again only if one of them changed.

The check errs one way only. An object it cannot follow (an instance with its
own pickling, a notebook-defined class, a numpy array whose contents change in
place) makes ``CodeState.of`` return None, and such a workflow is pickled at
every submit, as before. Which globals a function reads, and which objects
travel by name, is decided by cloudpickle's own rules; were they to move in a
cloudpickle release, every workflow is pickled at every submit.
"""

from __future__ import annotations

import copyreg
import enum
import operator
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

from .._component import Component

_MISSING = object()  # a global name not (yet) defined; an empty closure cell
_ATOMS = frozenset(
    {str, bytes, int, float, bool, complex, type(None), type(Ellipsis), range, types.CodeType}
)
_internals = getattr(cloudpickle, "cloudpickle", None)
_code_globals: Callable[[types.CodeType], dict[str, None]] | None = getattr(
    _internals, "_extract_code_globals", None
)
_by_reference: Callable[[Any], bool] | None = getattr(
    _internals, "_should_pickle_by_reference", None
)
_OBJECT_PICKLING = ("__reduce_ex__", "__reduce__", "__getstate__")
Fact = tuple[Callable[[Any], tuple[Any, ...]], Any, tuple[Any, ...]]  # read, object, as read


class CodeState:
    """The objects a pickle was made from, as they were; ``unchanged()`` compares them now."""

    def __init__(self, facts: list[Fact], *, packages: bool) -> None:
        self._facts = facts
        # A function that uses a package also takes along those of its submodules that
        # are imported and that its code names: a new import may change its pickle.
        self._modules = len(sys.modules) if packages else None

    @classmethod
    def of(cls, root: Any) -> CodeState | None:
        """The state of everything pickling ``root`` reads; None if it holds an object
        whose changes this cannot see."""
        if _code_globals is None or _by_reference is None:
            return None
        walk = _Walk()
        return cls(walk.facts, packages=walk.packages) if walk.visit(root) else None

    def unchanged(self) -> bool:
        if self._modules is not None and len(sys.modules) != self._modules:
            return False
        for read, obj, then in self._facts:
            now = read(obj)
            if len(now) != len(then) or not all(map(operator.is_, now, then)):
                return False
        return True


def _items(mapping: dict[Any, Any]) -> tuple[Any, ...]:
    return (*mapping, *mapping.values())


def _members(collection: list[Any] | set[Any]) -> tuple[Any, ...]:
    return tuple(collection)


def _attributes(obj: Any) -> tuple[Any, ...]:
    return (type(obj), *_items(vars(obj)))


def _by_name(obj: Any) -> tuple[Any, ...]:
    assert _by_reference is not None
    return (_by_reference(obj),)


def _component_by_name(component: Component) -> tuple[Any, ...]:
    return (component.module_reference() is not None,)


_CONTAINERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    list: _members,
    set: _members,
    dict: _items,
}


def _function(fn: types.FunctionType) -> tuple[Any, ...]:
    """Everything cloudpickle reads from a function it pickles by value."""
    assert _code_globals is not None
    scope = fn.__globals__
    cells = tuple(_cell(cell) for cell in fn.__closure__ or ())
    names = tuple(scope.get(name, _MISSING) for name in _code_globals(fn.__code__))
    fixed = (fn.__code__, fn.__defaults__, fn.__kwdefaults__, fn.__name__, fn.__qualname__)
    return (*fixed, fn.__module__, fn.__doc__, fn.__annotations__, fn.__dict__, *cells, *names)


def _cell(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty
        return _MISSING


class _Walk:
    """Visits what a pickle of an object reads, noting the facts to compare later."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self._seen: set[int] = set()
        self._todo: list[Any] = []
        self.packages = False  # whether a package module was met

    def visit(self, root: Any) -> bool:
        """Walk from ``root``; False as soon as something cannot be followed."""
        self._todo.append(root)
        while self._todo:
            obj = self._todo.pop()
            if id(obj) in self._seen:
                continue
            self._seen.add(id(obj))
            if not self._one(obj):
                return False
        return True

    def _note(self, read: Callable[[Any], tuple[Any, ...]], obj: Any) -> tuple[Any, ...]:
        state = read(obj)
        self.facts.append((read, obj, state))
        return state

    def _one(self, obj: Any) -> bool:
        kind = type(obj)
        if kind in _ATOMS or obj is _MISSING:
            return True
        if kind in _CONTAINERS:
            self._todo.extend(self._note(_CONTAINERS[kind], obj))
        elif kind is tuple or kind is frozenset:
            self._todo.extend(obj)
        elif kind is types.FunctionType:
            self._function(obj)
        elif kind is types.BuiltinFunctionType:
            return _module_level(obj)
        elif isinstance(obj, Component):
            self._component(obj)
        elif isinstance(obj, type | types.ModuleType):
            self.packages = self.packages or bool(getattr(obj, "__package__", None))
            return self._note(_by_name, obj) == (True,)
        elif isinstance(obj, enum.Enum):
            return self._note(_by_name, kind) == (True,)
        elif _plain_instance(obj):
            self._todo.extend(self._note(_attributes, obj))
        else:
            return False
        return True

    def _function(self, fn: types.FunctionType) -> None:
        if self._note(_by_name, fn) != (True,):  # by name: only that it still is matters
            self._todo.extend(self._note(_function, fn))

    def _component(self, component: Component) -> None:
        if self._note(_component_by_name, component) == (True,):
            return
        self._note(_attributes, component)
        self._todo.append(type(component))
        self._todo.extend(component.__getstate__().values())


def _module_level(fn: types.BuiltinFunctionType) -> bool:
    """A built-in function of a module (``time.time``), pickled by its name."""
    owner = getattr(fn, "__self__", None)
    return owner is None or isinstance(owner, types.ModuleType)


def _plain_instance(obj: Any) -> bool:
    """An instance pickled as its class's name and its ``__dict__``, nothing else: its
    class found by name, no pickling of its own, no slots."""
    cls = type(obj)
    assert _by_reference is not None
    return (
        cls.__module__ != "builtins"
        and cls not in copyreg.dispatch_table
        and all(getattr(cls, name) is getattr(object, name) for name in _OBJECT_PICKLING)
        and not hasattr(cls, "__getnewargs_ex__")
        and not hasattr(cls, "__getnewargs__")
        and not any("__slots__" in vars(k) for k in cls.__mro__)
        and hasattr(obj, "__dict__")
        and _by_reference(cls)
    )
