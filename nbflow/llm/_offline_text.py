"""The offline model's replies: a pure function of the model name and the messages.

Replies are sentences built from the request's own words, chosen by a SHA-256
chain so they are the same on every machine and Python version; token counts
are exact for the offline tokenizer (`count_tokens`: a word or a punctuation
mark is one token), and embeddings are hashed bags of words, so tests can
predict every number. Tool calls and structured replies are built on top of
these in `_offline_tools`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass

EMBEDDING_DIMS = 64

# One token is a word or a punctuation mark: close enough to BPE for budgets and charts,
# and it lets a streamed chunk be exactly one token.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")
_TOKENS_PER_MESSAGE = 3

# Request words that would make a poor topic ("Explain matters because ...").
_FILLER = frozenset({
    "about", "also", "briefly", "could", "describe", "explain", "from", "give", "have", "into",
    "just", "list", "make", "more", "please", "short", "should", "show", "some", "tell", "than",
    "that", "their", "there", "these", "they", "this", "what", "when", "where", "which", "with",
    "would", "write", "your",
})  # fmt: skip
_VOCAB = (
    "context", "signal", "budget", "trace", "source", "draft", "outline", "evidence",
    "latency", "summary", "retry", "detail", "pattern", "window", "result", "review",
)  # fmt: skip
_TEMPLATES = (
    "The {a} depends on the {b}.",
    "A closer look at {a} shows how {b} and {c} interact.",
    "In short, {a} comes before {b}.",
    "Each {a} should be checked against the {b}.",
    "Most of the {a} is explained by {b} and {c}.",
    "Keep the {a} small and the {b} explicit.",
    "{A} matters because the {b} changes over time.",
    "Without {a}, the {b} drifts toward {c}.",
)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


class Picker:
    """Choices from a SHA-256 chain: stable across Python versions, unlike ``random.Random``."""

    def __init__(self, seed: str) -> None:
        self._state = hashlib.sha256(seed.encode()).digest()
        self._pool: list[int] = []

    def below(self, n: int) -> int:
        if not self._pool:
            self._state = hashlib.sha256(self._state).digest()
            self._pool = list(struct.unpack("<8I", self._state))
        return self._pool.pop() % n

    def choice(self, words: tuple[str, ...]) -> str:
        return words[self.below(len(words))]


def content_words(text: str) -> list[str]:
    """Words of four letters or more that are not request filler, in order, as written."""
    words = re.findall(r"[^\W\d_]{4,}", text)
    return list(dict.fromkeys(w for w in words if w.lower() not in _FILLER))


def _topic_words(text: str) -> tuple[str, ...]:
    topic = dict.fromkeys(w.lower() for w in content_words(text))
    return tuple(topic)[:6] or _VOCAB[:3]


def last_user_text(turns: list[tuple[str, str]]) -> str:
    return next((text for role, text in reversed(turns) if role == "user"), "")


class Sentences:
    """Sentences about the last user message, as many as asked for, from one seed."""

    def __init__(self, picker: Picker, turns: list[tuple[str, str]]) -> None:
        self.picker = picker
        self.topic = _topic_words(last_user_text(turns))
        self.pool = self.topic + _VOCAB

    def first(self) -> str:
        return self._sentence(self.topic[0])

    def next(self) -> str:
        return self._sentence(self.picker.choice(self.pool))

    def _sentence(self, first: str) -> str:
        picker, pool = self.picker, self.pool
        a, b, c = first, picker.choice(pool), picker.choice(pool)
        return picker.choice(_TEMPLATES).format(a=a, A=a.capitalize(), b=b, c=c)


def reply_text(model: str, turns: list[tuple[str, str]]) -> str:
    picker = Picker(json.dumps([model, turns]))
    sentences = Sentences(picker, turns)
    said = [sentences.first()]
    said += [sentences.next() for _ in range(1 + picker.below(4))]
    return " ".join(said)


def pieces_of(text: str) -> tuple[str, ...]:
    """``text`` cut into tokens that join back into it (leading spaces ride with a token)."""
    return tuple(_PIECE.findall(text))


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    @property
    def tokens(self) -> int:
        return count_tokens(self.name) + count_tokens(self.arguments)


@dataclass(frozen=True)
class Completion:
    model: str
    pieces: tuple[str, ...]  # one token each, streamed one per chunk
    prompt_tokens: int
    truncated: bool
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) + sum(call.tokens for call in self.tool_calls)

    @property
    def finish_reason(self) -> str:
        if self.truncated:
            return "length"
        return "tool_calls" if self.tool_calls else "stop"


def prompt_tokens(turns: list[tuple[str, str]], *, extra: str = "") -> int:
    # Like upstream chat prompts: a few tokens of framing per message and to prime the reply.
    framed = sum(count_tokens(text) + _TOKENS_PER_MESSAGE for _, text in turns)
    return framed + _TOKENS_PER_MESSAGE + count_tokens(extra)


def completion_of(
    model: str,
    text: str,
    prompt: int,
    *,
    max_tokens: int | None,
    tool_calls: tuple[ToolCall, ...] = (),
) -> Completion:
    """The completion that says ``text`` (cut at ``max_tokens``) and makes ``tool_calls``."""
    pieces = pieces_of(text)
    truncated = max_tokens is not None and len(pieces) > max_tokens
    return Completion(
        model=model,
        pieces=pieces[:max_tokens] if truncated else pieces,
        prompt_tokens=prompt,
        truncated=truncated,
        tool_calls=tool_calls,
    )


def complete(model: str, turns: list[tuple[str, str]], *, max_tokens: int | None) -> Completion:
    text = reply_text(model, turns)
    return completion_of(model, text, prompt_tokens(turns), max_tokens=max_tokens)


def embed(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """Signed feature hashing of words, so texts sharing words get a positive cosine."""
    vector = [0.0] * dims
    for word in _TOKEN.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % dims] += 1.0 if digest[4] & 1 else -1.0
    # A half-weight feature for the whole text: word features are integers, so the
    # vector can never cancel out to zero and break the normalisation.
    text_digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    vector[int.from_bytes(text_digest, "little") % dims] += 0.5
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]
