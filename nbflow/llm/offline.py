"""The offline model: an OpenAI-compatible server for demos, notebooks and tests.

    with serve_offline() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="offline")
        server.inject("429", count=2, retry_after_s=0.2)

Replies are a pure function of the model name and the messages, token counts are
exact for the offline tokenizer (`count_tokens`), and embeddings are hashed bags of
words, so tests can predict every number. It calls the tools a request offers when
the question names them (arguments valid for each tool's schema), answers once the
results are in, and replies with JSON in JSON mode or an instance of a
``json_schema`` response format; see `_offline_tools` for the exact rules.
Faults are queued from Python (`OfflineServer.inject`), from another process
(``POST /_nbflow/faults`` with ``{"kind", "count", "retry_after_s", "delay_s",
"after_chunks"}``) or for one request (header ``x-nbflow-fault: 429``, with
``x-nbflow-fault-retry-after``, ``-delay`` or ``-after-chunks``).
``GET /_nbflow/stats`` counts requests per endpoint and faults served. Run it in
the foreground with ``python -m nbflow.llm.offline --port 8777``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from nbflow.errors import NbflowError
from nbflow.llm._offline_faults import Fault, FaultKind
from nbflow.llm._offline_text import (
    EMBEDDING_DIMS,
    Completion,
    complete,
    count_tokens,
    embed,
    reply_text,
)

if TYPE_CHECKING:
    import uvicorn

    from nbflow.llm._offline_app import OfflineModel

__all__ = [
    "EMBEDDING_DIMS",
    "Completion",
    "Fault",
    "OfflineServer",
    "complete",
    "count_tokens",
    "embed",
    "main",
    "reply_text",
    "serve_offline",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CLI_PORT = 8777
_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0


# --- the server ------------------------------------------------------------------


class OfflineServer:
    """A running offline model; pass ``base_url`` to ``openai.OpenAI(base_url=...)``.

    ``model.latency_s`` and ``model.token_interval_s`` may be changed while it runs.
    """

    def __init__(
        self,
        model: OfflineModel,
        server: uvicorn.Server,
        sock: socket.socket,
        thread: threading.Thread,
    ) -> None:
        self.model = model
        address = sock.getsockname()
        self.host: str = address[0]
        self.port: int = address[1]
        self.url = _root_url(self.host, self.port)  # the control endpoints live here
        self.base_url = f"{self.url}/v1"
        self._server = server
        self._sock = sock
        self._thread = thread

    def inject(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        retry_after_s: float = 1.0,
        delay_s: float = 1.0,
        after_chunks: int = 1,
    ) -> None:
        fault = Fault(
            kind,
            count=count,
            retry_after_s=retry_after_s,
            delay_s=delay_s,
            after_chunks=after_chunks,
        )
        self.model.faults.add(fault)

    def clear_faults(self) -> None:
        self.model.faults.clear()

    def pending_faults(self) -> list[Fault]:
        return self.model.faults.pending()

    def stats(self) -> dict[str, dict[str, int]]:
        return self.model.stats.snapshot()

    def reset_stats(self) -> None:
        self.model.stats.reset()

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(_STOP_TIMEOUT_S)
        if self._thread.is_alive():
            # Streams still open past the grace period: stop waiting for them.
            self._server.force_exit = True
            self._thread.join()
        self._sock.close()

    def __enter__(self) -> OfflineServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OfflineServer {self.base_url}>"

    def _wait_started(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise NbflowError(f"the offline model did not start on {self.url}")
            time.sleep(0.002)


def serve_offline(
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    latency_s: float = 0.0,
    token_interval_s: float = 0.0,
) -> OfflineServer:
    """Start the offline model on a background thread; ``port=0`` picks a free port."""
    model, server, sock = _prepare(host, port, latency_s, token_interval_s, foreground=False)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="nbflow-offline-model", daemon=True
    )
    thread.start()
    handle = OfflineServer(model, server, sock, thread)
    try:
        handle._wait_started()
    except BaseException:
        handle.close()
        raise
    return handle


def _prepare(
    host: str, port: int, latency_s: float, token_interval_s: float, *, foreground: bool
) -> tuple[OfflineModel, uvicorn.Server, socket.socket]:
    import uvicorn

    from nbflow.llm._offline_app import OfflineModel

    _hide_stream_cuts()
    model = OfflineModel(latency_s=latency_s, token_interval_s=token_interval_s)
    # Binding before uvicorn starts is what makes port=0 work: the port is known at once.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Named TCP explicitly: asyncio turns TCP_NODELAY on only for sockets whose
    # protocol is IPPROTO_TCP, and without it every keep-alive reply waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    # A background server must not reconfigure the host process's logging.
    quiet = {} if foreground else {"log_config": None, "log_level": None}
    config = uvicorn.Config(
        model.app,
        http="h11",
        loop="asyncio",
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=1,
        **quiet,  # type: ignore[arg-type]
    )
    return model, uvicorn.Server(config), sock


class _DropStreamCuts(logging.Filter):
    """An injected ``cut_stream`` is on purpose; uvicorn would log it as an app crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        from nbflow.llm._offline_app import StreamCut

        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


def _hide_stream_cuts() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropStreamCuts) for f in logger.filters):
        logger.addFilter(_DropStreamCuts())


def _root_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbflow.llm.offline",
        description="Serve nbflow's offline OpenAI-compatible model in the foreground.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_CLI_PORT, help="0 picks a free port")
    parser.add_argument("--latency-s", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--token-interval-s", type=float, default=0.0, help="delay between chunks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _, server, sock = _prepare(
        args.host, args.port, args.latency_s, args.token_interval_s, foreground=True
    )
    host, port = sock.getsockname()[:2]
    print(f"nbflow offline model at {_root_url(host, port)}/v1 (any API key works)", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl+C it handled gracefully; the shutdown is already done.
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
