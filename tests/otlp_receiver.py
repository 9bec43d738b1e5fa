"""A local OTLP/HTTP traces receiver on a real socket; requests decoded by opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attrs_of(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attrs_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: str  # "UNSET" | "OK" | "ERROR"
    status_message: str
    attrs: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str


@dataclass
class Receiver:
    """Collects every span posted to ``/v1/traces``; ``fail_next`` answers 503 that many times."""

    url: str = ""
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[ReceivedSpan]:
        with self.lock:
            requests = list(self.requests)
        return [span for request in requests for span in _spans(request)]

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        found: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans():
            found.setdefault(span.trace_id, []).append(span)
        return found

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.paths.clear()


def _spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    out = []
    for resource_spans in request.resource_spans:
        resource = attrs_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(_span(span, resource, scope_spans.scope.name))
    return out


def _span(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        name=span.name,
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        status_message=span.status.message,
        attrs=attrs_of(span.attributes),
        events=[(e.name, e.time_unix_nano, attrs_of(e.attributes)) for e in span.events],
        resource=resource,
        scope=scope,
    )


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        receiver = self.receiver
        with receiver.lock:
            receiver.paths.append(self.path)
            failing = receiver.fail_next > 0
            if failing:
                receiver.fail_next -= 1
        if failing or self.path != "/v1/traces":
            self.send_response(503 if failing else 404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with receiver.lock:
            receiver.requests.append(request)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read what arrived, not an access log


class ReceiverServer:
    """The receiver served on a free loopback port from a thread of this process."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        handler = type("Handler", (_Handler,), {"receiver": self.receiver})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.receiver.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
