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
    ├── ArgumentsTooLarge       a run's arguments are over MAX_ARGS_BYTES (also a ValueError)
    ├── InputTimeout            nf.wait_for_input's timeout_s passed first (also a TimeoutError)
    ├── InputRejected           a value sent to a waiting run does not fit (also a ValueError)
    ├── NondeterminismError     a replay made other calls than the attempt it replays
    ├── StructuredOutputError   an LLM reply did not parse as the format asked for (ValueError)
    └── ToolArgumentsError      a tool call's arguments are not what its schema allows (ValueError)

    AttemptFenced and Suspend (BaseExceptions, like KeyboardInterrupt: user code's
    ``except Exception`` cannot swallow them) unwind a run's code on a worker: the
    attempt lost its run to a newer one, or reached a wait. Neither reaches a user
    outside the worker.

Errors raised by a user's own component are never wrapped: after retries run
out, the component re-raises the user's exception with its traceback intact.
"""

from __future__ import annotations

from typing import Any


class NbflowError(Exception):
    """Root of everything nbflow raises itself."""


class ConfigError(NbflowError, ValueError):
    """Bad arguments to a decorator, policy or command."""


class CacheKeyError(NbflowError, TypeError):
    """An argument cannot be part of a cache key."""


class StepTimeout(NbflowError, TimeoutError):
    """A component ran past its time-out."""


class RunCancelled(NbflowError):
    """The run was cancelled; raised at the next component boundary."""


class RunFailed(NbflowError):
    """A run on the runtime ended in error; carries the remote traceback."""

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
    """No run with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class ResultNotKept(NbflowError):
    """A run succeeded but its return value could not be pickled."""

    def __init__(self, message: str, *, run_id: str, output: object = None):
        super().__init__(message)
        self.run_id = run_id
        self.output = output  # the JSON preview of the value, which is kept


class PayloadRejected(NbflowError):
    """Shipped code or data failed its signature or version check."""


class RuntimeUnavailable(NbflowError):
    """The Redis server or embedded runtime cannot be reached."""


class ArgumentsTooLarge(NbflowError, ValueError):
    """A run's arguments are over MAX_ARGS_BYTES."""


class InputTimeout(NbflowError, TimeoutError):
    """``nf.wait_for_input``'s ``timeout_s`` passed first."""


class InputRejected(NbflowError, ValueError):
    """A value sent to a waiting run does not fit."""


class NondeterminismError(NbflowError):
    """A replay made other calls than the attempt it replays."""


class AttemptFenced(BaseException):
    """This attempt no longer holds its run: stop at once, write nothing more."""


class Suspend(BaseException):
    """Ends this attempt at a wait: not an error, the run waits, holding no worker."""

    def __init__(self, wait: dict[str, Any], step: str, wake_at_s: float | None) -> None:
        super().__init__(f"waiting: {wait['kind']}")
        self.wait = wait
        self.step = step
        self.wake_at_s = wake_at_s


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
