"""Which workflow a run names: one an ``--app`` module registered by name, or
code shipped by value, fetched once per digest and kept."""

from __future__ import annotations

import importlib
import os
import sys

from .. import constants as c
from .._workflow import Workflow
from ..errors import ConfigError, NbflowError, PayloadRejected
from . import codeship
from .connection import SyncRedis


class UnknownWorkflow(NbflowError):
    pass


class Catalog:
    def __init__(self, registry: dict[str, Workflow], redis: SyncRedis, secret: bytes) -> None:
        self.registry = registry
        self._redis = redis
        self._secret = secret
        self._code: dict[str, Workflow] = {}

    def workflow(self, meta: dict[bytes, bytes], worker: str) -> Workflow:
        """The run's workflow; UnknownWorkflow or PayloadRejected say why there is none."""
        name = meta.get(b"workflow", b"").decode()
        digest = meta.get(b"code", b"").decode()
        if not digest:
            if name in self.registry:
                return self.registry[name]
            raise UnknownWorkflow(
                f"workflow {name!r} is not registered on worker {worker} "
                "(start the worker with --app, or deploy the workflow)"
            )
        if digest not in self._code:
            blob = self._redis.get(c.CODE_KEY.format(digest=digest))
            if blob is None:
                raise PayloadRejected(
                    f"code {digest} for workflow {name!r} is missing from the runtime"
                )
            wf = codeship.unpack(blob, self._secret, codeship.code_for(name, digest))
            if not isinstance(wf, Workflow):
                raise PayloadRejected(f"code {digest} is not a workflow")
            self._code[digest] = wf
        return self._code[digest]


def load_app(module_name: str) -> dict[str, Workflow]:
    """The workflows an importable module defines, by name: served with no pickling.

    The module is looked for in the current directory first, then in the installed
    packages, as ``python -m`` would (a console script's own path holds neither).
    """
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not f"{module_name}.".startswith(f"{error.name}."):
            raise  # a module the app itself imports is missing: its traceback says where
        raise ConfigError(
            f"cannot import the app module {module_name!r}: no such module in {here} "
            "or among the installed packages"
        ) from None
    found = {obj.name: obj for obj in vars(module).values() if isinstance(obj, Workflow)}
    if not found:
        raise NbflowError(f"module {module_name!r} defines no nbflow workflows")
    return found
