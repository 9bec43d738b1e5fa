"""The workflows the API serves: those of ``--app module``, and those deployed from notebooks.

Deployed workflows are looked up in Redis on every request, so a ``wf.deploy()``
is servable at once by every API process; their code is loaded (signed, like any
shipped code) only to read the signature, and kept per digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from anyio import to_thread

from .. import constants as c
from .._workflow import Workflow
from ..errors import PayloadRejected
from ..runtime import codeship
from ..runtime.connection import AsyncRedis
from .errors import ApiError
from .schemas import InputModel, any_input, input_model

log = logging.getLogger("nbflow.api")


@dataclass(frozen=True)
class Served:
    name: str
    description: str
    source: str  # "app" or "deployed"
    input: InputModel
    problem: str = ""  # why a deployed workflow's code could not be read here
    workflow: Workflow | None = None  # an --app workflow, shipped with each run

    def describe(self) -> dict[str, Any]:
        info = {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "input_schema": self.input.json_schema,
        }
        return {**info, "problem": self.problem} if self.problem else info


def served_from(name: str, wf: Workflow, source: str) -> Served:
    shipped = wf if source == "app" else None
    return Served(name, wf.description, source, input_model(name, wf.fn), workflow=shipped)


class Catalog:
    def __init__(self, redis: AsyncRedis, secret: bytes, app: dict[str, Workflow]) -> None:
        self.redis = redis
        self.secret = secret
        self.app = {name: served_from(name, wf, "app") for name, wf in app.items()}
        self._deployed: dict[tuple[str, str], Served] = {}  # (name, digest) -> Served

    async def all(self) -> list[Served]:
        deployed = await self.redis.hgetall(c.DEPLOYED)
        served = dict(self.app)
        for name_b, digest_b in deployed.items():
            name = name_b.decode()
            served[name] = await self._load(name, digest_b.decode())
        return [served[name] for name in sorted(served)]

    async def get(self, name: str) -> Served:
        """What a run of ``name`` would execute: a deployed workflow wins, as in Runtime.start."""
        digest = await self.redis.hget(c.DEPLOYED, name)
        if digest is not None:
            return await self._load(name, digest.decode())
        if name in self.app:
            return self.app[name]
        raise ApiError(
            404,
            "workflow_not_found",
            f"no workflow named {name!r} (serve it with --app, or deploy it)",
        )

    async def _load(self, name: str, digest: str) -> Served:
        key = (name, digest)
        if key in self._deployed:
            return self._deployed[key]
        served = await self._read(name, digest)
        if not served.problem:  # a problem may pass (code written late): look again next time
            self._deployed[key] = served
        return served

    async def _read(self, name: str, digest: str) -> Served:
        blob = await self.redis.get(c.CODE_KEY.format(digest=digest))
        try:
            if blob is None:
                raise PayloadRejected(f"code {digest} is missing from the runtime")
            wf = await to_thread.run_sync(
                codeship.unpack, blob, self.secret, codeship.code_for(name, digest)
            )
            if not isinstance(wf, Workflow):
                raise PayloadRejected(f"code {digest} is not a workflow")
        except Exception as error:  # unsigned, another Python, or imports this process lacks
            log.warning("deployed workflow %r: %s", name, error)
            return Served(name, "", "deployed", any_input(name), problem=str(error))
        return served_from(name, wf, "deployed")
