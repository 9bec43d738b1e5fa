"""The price table: lookup by name, dated variants and routing prefixes, user prices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbflow.errors import ConfigError
from nbflow.llm import PRICES, Price, estimate_cost, set_price
from nbflow.llm.pricing import price_for


@pytest.fixture
def prices() -> Iterator[dict[str, Price]]:
    saved = dict(PRICES)
    yield PRICES
    PRICES.clear()
    PRICES.update(saved)


def test_cost_counts_input_output_and_cached_input_at_their_own_rates() -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    assert price.cost_usd(1_000_000, 0) == pytest.approx(2.0)
    assert price.cost_usd(1_000_000, 500_000, cached_input_tokens=400_000) == pytest.approx(
        0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0
    )
    assert Price(1.0).cost_usd(1_000_000, 0, cached_input_tokens=1_000_000) == pytest.approx(1.0)


def test_dated_variants_and_routing_prefixes_find_the_longest_known_name() -> None:
    assert price_for("gpt-4o-mini-2024-07-18") is PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06") is PRICES["gpt-4o"]
    assert price_for("openai/gpt-4.1-mini") is PRICES["gpt-4.1-mini"]
    assert price_for("gpt-4omni") is None
    assert estimate_cost("llama3.1:8b", input_tokens=100) is None


def test_users_can_price_their_own_models(prices) -> None:
    set_price("llama3.1", input_per_mtok=0.1, output_per_mtok=0.2)
    assert estimate_cost(
        "llama3.1-70b", input_tokens=1_000_000, output_tokens=1_000_000
    ) == pytest.approx(0.3)
    prices["my-model"] = Price(1.0)
    assert estimate_cost("my-model", input_tokens=500_000) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        set_price("bad", input_per_mtok=-1)
