"""How many requests may follow runs at once in one API process: past the limit, 503.

An event stream (SSE or NDJSON) and a request waiting for its run each hold a
socket and a place in the run's feed for as long as the run goes on; without
a limit, clients could hold them until the process runs out of file handles.
A request takes its slot before it starts a run, so a refused one starts none.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from .. import constants as c
from .errors import ApiError

RETRY_AFTER_S = 5


class Streams:
    def __init__(self, limit: int = c.API_MAX_STREAMS) -> None:
        if limit < 1:
            raise ValueError(f"max_streams must be at least 1, not {limit}")
        self.limit = limit
        self.open = 0

    def slot(self) -> Slot:
        """A slot, or ApiError 503 when every one is taken."""
        if self.open >= self.limit:
            raise ApiError(
                503,
                "too_many_streams",
                f"this server follows {self.limit} runs for clients at once already "
                f"(max_streams); retry in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.open += 1
        return Slot(self)


class Slot:
    """Given back when its ``with`` block ends, unless handed over to a streamed response."""

    def __init__(self, streams: Streams) -> None:
        self._streams: Streams | None = streams

    def give_back(self) -> None:
        if self._streams is not None:
            self._streams.open -= 1
            self._streams = None

    def hand_over(self) -> Callable[[], None]:
        """The slot's release, for a response that holds it until its stream ends."""
        holder = Slot(self._streams) if self._streams is not None else None
        self._streams = None
        return holder.give_back if holder is not None else _nothing

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.give_back()


def _nothing() -> None:
    pass
