"""nbflow's exceptions.

    NbflowError                 root of everything nbflow raises itself
    ├── ConfigError             bad arguments to a decorator, policy or command (also a ValueError)
    ├── CacheKeyError           an argument cannot be part of a cache key (also a TypeError)
    ├── StepTimeout             a component ran past its time-out (also a TimeoutError)
    ├── RunCancelled            the run was cancelled; raised at the next component boundary
    ├── RunFailed               a run on the runtime ended in error; carries the remote traceback
    ├── RunNotFound             no run with that id (also a KeyError)
    ├── ResultNotKept           a run succeeded but its return value could not be pickled
    ├── PayloadRejected         shipped code or data failed its signature or version check
    ├── RuntimeUnavailable      the Redis server or embedded runtime cannot be reached
    ├── StructuredOutputError   an LLM reply did not parse as the format asked for (ValueError)
    └── ToolArgumentsError      a tool call's arguments are not what its schema allows (ValueError)

Errors raised by a user's own component are never wrapped: after retries run
out, the component re-raises the user's exception with its traceback intact.
"""

from __future__ import annotations

from typing import Any


class NbflowError(Exception):
    pass


class ConfigError(NbflowError, ValueError):
    pass


class CacheKeyError(NbflowError, TypeError):
    pass


class StepTimeout(NbflowError, TimeoutError):
    pass


class RunCancelled(NbflowError):
    pass


class RunFailed(NbflowError):
    def __init__(
        self, message: str, *, run_id: str, error_type: str = "", remote_traceback: str = ""
    ):
        super().__init__(message)
        self.run_id = run_id
        self.error_type = error_type
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            return f"{text}\n\nRemote traceback (run {self.run_id}):\n{self.remote_traceback}"
        return text


class RunNotFound(NbflowError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class ResultNotKept(NbflowError):
    def __init__(self, message: str, *, run_id: str, output: object = None):
        super().__init__(message)
        self.run_id = run_id
        self.output = output  # the JSON preview of the value, which is kept


class PayloadRejected(NbflowError):
    pass


class RuntimeUnavailable(NbflowError):
    pass


class StructuredOutputError(NbflowError, ValueError):
    """A reply asked for in a format (``response_format=Model``) that does not parse as it.

    ``raw`` is the reply's text, as the model sent it; ``reply`` the unparsed SDK
    object when it could be read (its ``usage`` says what the call cost).
    """

    def __init__(self, message: str, *, raw: str, reply: Any = None):
        super().__init__(message)
        self.raw = raw
        self.reply: Any = reply


class ToolArgumentsError(NbflowError, ValueError):
    """A tool call whose arguments are not JSON, or not what the tool's parameters allow.

    ``raw`` is the arguments text as the model sent it.
    """

    def __init__(self, message: str, *, tool: str, raw: str):
        super().__init__(message)
        self.tool = tool
        self.raw = raw
