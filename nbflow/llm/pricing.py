"""Estimated cost of a call, from a price table users can extend.

Prices are US dollars per million tokens: list prices when this table was
written. They change, and deals differ, so set your own with ``set_price``.
A model is matched exactly, then by the longest known name it starts with
(``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``); a routing prefix such
as ``openai/`` is ignored. A model with no price gets no cost attribute.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from nbflow.errors import ConfigError


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # None: cached input costs as much as input

    def cost_usd(
        self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> float:
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        total = (
            (input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + output_tokens * self.output_per_mtok
        )
        return total / 1_000_000


PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00, 7.50),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
}
_lock = threading.Lock()


def set_price(
    model: str,
    *,
    input_per_mtok: float,
    output_per_mtok: float = 0.0,
    cached_input_per_mtok: float | None = None,
) -> None:
    """Add or replace a model's price (US dollars per million tokens)."""
    rates = (input_per_mtok, output_per_mtok, cached_input_per_mtok or 0.0)
    if not model or any(not isinstance(r, int | float) or r < 0 for r in rates):
        raise ConfigError("set_price needs a model name and prices >= 0 per million tokens")
    with _lock:
        PRICES[model] = Price(float(input_per_mtok), float(output_per_mtok), cached_input_per_mtok)


def price_for(model: str) -> Price | None:
    name = model.rsplit("/", 1)[-1]
    found = PRICES.get(name)
    if found is not None:
        return found
    # Longest first, so that gpt-4o-mini-... is not priced as gpt-4o.
    known = sorted((k for k in list(PRICES) if name.startswith(k + "-")), key=len, reverse=True)
    return PRICES[known[0]] if known else None


def estimate_cost(
    model: str, *, input_tokens: int, output_tokens: int = 0, cached_input_tokens: int = 0
) -> float | None:
    """Estimated US dollars for one call, or None when the model has no price."""
    price = price_for(model)
    if price is None:
        return None
    return price.cost_usd(input_tokens, output_tokens, cached_input_tokens)
