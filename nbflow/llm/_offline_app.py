"""The offline model's HTTP side: routes, faults and pacing over the replies in `_offline_text`.

Kept apart from `offline` so that importing the handle does not import Starlette.
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nbflow.errors import ConfigError
from nbflow.llm._offline_faults import Fault, FaultQueue, Stats
from nbflow.llm._offline_text import EMBEDDING_DIMS, Completion, count_tokens, embed
from nbflow.llm._offline_tools import ReplyOptions, answer
from nbflow.llm._offline_wire import ResponseBuilder, chat_chunks, chat_object, sse

Json = dict[str, Any]

LISTED_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")
_MODELS_CREATED = 1_700_000_000  # a fixed date keeps /v1/models byte-identical between runs

_FAULT_HEADERS = {
    "x-nbflow-fault-retry-after": "retry_after_s",
    "x-nbflow-fault-delay": "delay_s",
    "x-nbflow-fault-after-chunks": "after_chunks",
}


def header_fault(headers: Mapping[str, str]) -> Fault | None:
    kind = headers.get("x-nbflow-fault")
    if kind is None:
        return None
    fields = {key: headers[name] for name, key in _FAULT_HEADERS.items() if name in headers}
    return Fault.from_json({"kind": kind, **fields})


class StreamCut(Exception):
    """Raised inside a stream to drop the connection mid-body, as a flaky network would."""


class _Reject(Exception):
    """Ends a request early with an OpenAI-style error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


# --- request parsing ------------------------------------------------------------
def _error(status: int, message: str, type_: str, code: str | None, **headers: str) -> Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _invalid(message: str) -> _Reject:
    return _Reject(_error(400, message, "invalid_request_error", None))


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "500":
        message = "The server had an error while processing your request (injected fault)."
        return _error(500, message, "server_error", "server_error")
    message = f"Rate limit reached (injected fault); retry after {fault.retry_after_s:g} s."
    return _error(
        429,
        message,
        "requests",
        "rate_limit_exceeded",
        # retry-after must be whole seconds (RFC 9110); the -ms header carries the precision.
        **{
            "retry-after": str(math.ceil(fault.retry_after_s)),
            "retry-after-ms": str(round(fault.retry_after_s * 1000)),
        },
    )


def _check_auth(request: Request) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        message = "You didn't provide an API key (any bearer key works offline)."
        raise _Reject(_error(401, message, "invalid_request_error", "invalid_api_key"))


async def _json_object(request: Request) -> Json:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    return body


def _model_name(body: Json) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required.")
    return model


def _output_cap(body: Json, *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or value < 1:
            raise _invalid(f"'{key}' must be a positive integer.")
        return value
    return None


def _text_of(content: object) -> str:
    """Text of a message, content part or input item, whichever shape the client sent."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(filter(None, map(_text_of, content)))
    if isinstance(content, dict):
        for key in ("text", "content", "output"):
            if key in content:
                return _text_of(content[key])
    return ""


class _Conversation:
    """A request's turns as (role, text), and the tool results after its last user turn.

    A tool result names its tool through the call it answers, as upstream does.
    """

    def __init__(self) -> None:
        self.turns: list[tuple[str, str]] = []
        self._results: list[tuple[int, str, str]] = []  # (turn index, tool, output)
        self._tool_names: dict[str, str] = {}

    def say(self, role: str, text: str) -> None:
        self.turns.append((role, text))

    def called(self, call_id: object, name: str, arguments: object) -> str:
        self._tool_names[str(call_id)] = name
        return f"{name}({arguments if isinstance(arguments, str) else ''})"

    def answered(self, call_id: object, output: str) -> None:
        self._results.append((len(self.turns), self._tool_names.get(str(call_id), "tool"), output))
        self.say("tool", output)

    @property
    def results(self) -> list[tuple[str, str]]:
        last_user = max((i for i, (role, _) in enumerate(self.turns) if role == "user"), default=-1)
        return [(name, output) for i, name, output in self._results if i > last_user]


def _chat_conversation(body: Json) -> _Conversation:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty list.")
    talk = _Conversation()
    for m in messages:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", "user"))
        if role == "tool":
            talk.answered(m.get("tool_call_id"), _text_of(m))
            continue
        text = _text_of(m)
        for call in m.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                name = str(function.get("name", ""))
                said = talk.called(call.get("id"), name, function.get("arguments"))
                text = f"{text} {said}" if text else said
        talk.say(role, text)
    return talk


def _response_conversation(body: Json) -> _Conversation:
    talk = _Conversation()
    if body.get("instructions"):
        talk.say("system", _text_of(body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        talk.say("user", items)
        return talk
    if not isinstance(items, list) or not items:
        raise _invalid("'input' must be a string or a non-empty list.")
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            said = talk.called(
                item.get("call_id"), str(item.get("name", "")), item.get("arguments")
            )
            talk.say("assistant", said)
        elif kind == "function_call_output":
            talk.answered(item.get("call_id"), _text_of(item.get("output")))
        else:
            talk.say(str(item.get("role", "user")), _text_of(item))
    return talk


def _embedding_texts(value: object) -> list[str]:
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _invalid("'input' must be a string or a non-empty list.")
    texts = [" ".join(map(str, v)) if isinstance(v, list) else v for v in value]
    if not all(isinstance(t, str) and t for t in texts):
        raise _invalid("'input' cannot contain an empty or non-text item.")
    return texts


# --- payloads ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    body: Json
    stream: bool
    fault: Fault | None

    @property
    def cut_after(self) -> int | None:
        fault = self.fault
        return fault.after_chunks if fault is not None and fault.kind == "cut_stream" else None


class OfflineModel:
    """The app plus its mutable state: pacing, queued faults and request counts."""

    def __init__(self, *, latency_s: float = 0.0, token_interval_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.token_interval_s = token_interval_s
        self.faults = FaultQueue()
        self.stats = Stats()
        self.app = Starlette(routes=self._routes(), exception_handlers=self._handlers())

    def _routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self._model, methods=["GET"]),
            Route("/_nbflow/faults", self._faults, methods=["GET", "POST", "DELETE"]),
            Route("/_nbflow/stats", self._stats, methods=["GET", "DELETE"]),
        ]

    @staticmethod
    def _handlers() -> dict[type[Exception], Any]:
        def rejected(_: Request, exc: Exception) -> Response:
            assert isinstance(exc, _Reject)
            return exc.response

        def bad_config(_: Request, exc: Exception) -> Response:
            return _error(400, str(exc), "invalid_request_error", None)

        return {_Reject: rejected, ConfigError: bad_config}

    async def _admit(self, request: Request, endpoint: str) -> _Call:
        self.stats.count_request(endpoint)
        _check_auth(request)
        body = await _json_object(request)
        stream = body.get("stream") is True
        fault = header_fault(request.headers) or self.faults.take(stream=stream)
        if fault is None or not fault.applies_to(stream=stream):
            return _Call(body, stream, None)
        self.stats.count_fault(fault.kind)
        if fault.kind in ("429", "500"):
            raise _Reject(_fault_response(fault))
        if fault.kind == "slow_first_token":
            await asyncio.sleep(fault.delay_s)
        return _Call(body, stream, fault)

    async def _pace(self, c: Completion) -> None:
        await asyncio.sleep(self.latency_s + self.token_interval_s * c.completion_tokens)

    async def _events(
        self, payloads: Iterator[Json], call: _Call, named: bool
    ) -> AsyncIterator[bytes]:
        await asyncio.sleep(self.latency_s)
        for sent, payload in enumerate(payloads):
            if sent == call.cut_after:
                raise StreamCut
            if sent and self.token_interval_s:
                await asyncio.sleep(self.token_interval_s)
            yield sse(payload, named=named)
        # The Responses API ends with its completed event; only chat sends [DONE].
        if not named:
            yield b"data: [DONE]\n\n"

    def _stream(self, payloads: Iterator[Json], call: _Call, *, named: bool) -> Response:
        body = self._events(payloads, call, named)
        headers = {"cache-control": "no-cache", "x-request-id": _request_id()}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def _chat(self, request: Request) -> Response:
        call = await self._admit(request, "chat.completions")
        cap = _output_cap(call.body, "max_completion_tokens", "max_tokens")
        talk = _chat_conversation(call.body)
        options = ReplyOptions.for_chat(call.body)
        c = answer(
            _model_name(call.body),
            talk.turns,
            max_tokens=cap,
            options=options,
            results=talk.results,
        )
        if call.stream:
            stream_options = call.body.get("stream_options")
            usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            chunks = chat_chunks(c, include_usage=usage)
            return self._stream(chunks, call, named=False)
        await self._pace(c)
        return _json(chat_object(c))

    async def _responses(self, request: Request) -> Response:
        call = await self._admit(request, "responses")
        cap = _output_cap(call.body, "max_output_tokens")
        talk = _response_conversation(call.body)
        options = ReplyOptions.for_responses(call.body)
        c = answer(
            _model_name(call.body),
            talk.turns,
            max_tokens=cap,
            options=options,
            results=talk.results,
        )
        builder = ResponseBuilder(c, call.body)
        if call.stream:
            events = ({**e, "sequence_number": i} for i, e in enumerate(builder.events()))
            return self._stream(events, call, named=True)
        await self._pace(c)
        return _json(builder.response(final=True))

    async def _embeddings(self, request: Request) -> Response:
        call = await self._admit(request, "embeddings")
        model = _model_name(call.body)
        texts = _embedding_texts(call.body.get("input"))
        dims = _output_cap(call.body, "dimensions") or EMBEDDING_DIMS
        as_base64 = call.body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(embed(t, dims), as_base64)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(map(count_tokens, texts))
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        await asyncio.sleep(self.latency_s)
        return _json({"object": "list", "data": data, "model": model, "usage": usage})

    async def _models(self, request: Request) -> Response:
        self.stats.count_request("models")
        _check_auth(request)
        return _json({"object": "list", "data": [_model_card(m) for m in LISTED_MODELS]})

    async def _model(self, request: Request) -> Response:
        self.stats.count_request("models")
        _check_auth(request)
        return _json(_model_card(request.path_params["model_id"]))

    async def _faults(self, request: Request) -> Response:
        if request.method == "POST":
            self.faults.add(Fault.from_json(await _json_object(request)))
        elif request.method == "DELETE":
            self.faults.clear()
        return JSONResponse({"pending": [asdict(f) for f in self.faults.pending()]})

    async def _stats(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.stats.reset()
        return JSONResponse(self.stats.snapshot())


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _json(payload: Json) -> Response:
    return JSONResponse(payload, headers={"x-request-id": _request_id()})


def _model_card(model_id: str) -> Json:
    return {"id": model_id, "object": "model", "created": _MODELS_CREATED, "owned_by": "nbflow"}


def _vector(values: list[float], as_base64: bool) -> list[float] | str:
    # The SDK asks for base64 unless told otherwise: little-endian float32, as upstream.
    if not as_base64:
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
