"""The offline model's replies: a pure function of the model name and the messages.

Replies are sentences built from the request's own words, chosen by a SHA-256
chain so they are the same on every machine and Python version; token counts
are exact for the offline tokenizer (`count_tokens`: a word or a punctuation
mark is one token), and embeddings are hashed bags of words, so tests can
predict every number.
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


class _Picker:
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


def _topic_words(text: str) -> tuple[str, ...]:
    words = (w.lower() for w in re.findall(r"[^\W\d_]{4,}", text))
    topic = dict.fromkeys(w for w in words if w not in _FILLER)
    return tuple(topic)[:6] or _VOCAB[:3]


def _sentence(picker: _Picker, first: str, pool: tuple[str, ...]) -> str:
    a, b, c = first, picker.choice(pool), picker.choice(pool)
    return picker.choice(_TEMPLATES).format(a=a, A=a.capitalize(), b=b, c=c)


def reply_text(model: str, turns: list[tuple[str, str]]) -> str:
    picker = _Picker(json.dumps([model, turns]))
    last_user = next((text for role, text in reversed(turns) if role == "user"), "")
    topic = _topic_words(last_user)
    pool = topic + _VOCAB
    sentences = [_sentence(picker, topic[0], pool)]
    sentences += [_sentence(picker, picker.choice(pool), pool) for _ in range(1 + picker.below(4))]
    return " ".join(sentences)


@dataclass(frozen=True)
class Completion:
    model: str
    pieces: tuple[str, ...]  # one token each, streamed one per chunk
    prompt_tokens: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    @property
    def finish_reason(self) -> str:
        return "length" if self.truncated else "stop"


def complete(model: str, turns: list[tuple[str, str]], *, max_tokens: int | None) -> Completion:
    pieces = tuple(_PIECE.findall(reply_text(model, turns)))
    truncated = max_tokens is not None and len(pieces) > max_tokens
    # Like upstream chat prompts: a few tokens of framing per message and to prime the reply.
    prompt_tokens = sum(count_tokens(text) + _TOKENS_PER_MESSAGE for _, text in turns)
    return Completion(
        model=model,
        pieces=pieces[:max_tokens] if truncated else pieces,
        prompt_tokens=prompt_tokens + _TOKENS_PER_MESSAGE,
        truncated=truncated,
    )


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
