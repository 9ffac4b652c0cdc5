"""LLM token pricing is exact (Decimal, to the cent-fraction) against genai-prices' published prices.

The expected cost of every case is computed here from the per-million-token prices in
`genai_prices.data` (the published data, read independently: no genai-prices price function is
called), with the documented rules: cache reads and writes are part of input_tokens, and a long-context
tier, once the total input exceeds its start, applies to all tokens of that price.

Cases (several providers): plain input/output; cached input (OpenAI, Google, Anthropic); cache writes
(Anthropic); long-context tiers crossed and not crossed (Anthropic Sonnet 4.5, Gemini 2.5 Pro, Gemini
1.5 Pro); an AICostPricing override replaces genai-prices' price; GPU-hours and FX conversions are
exact; an unknown model is refused naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import data
from genai_prices.types import ModelPrice, TieredPrices

from functions.codecs import ai_pricing
from functions.models.aicost import AICostEvent, AICostPricing

WHEN = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
MTOK = Decimal(1_000_000)


def published(provider: str, model: str) -> ModelPrice:
    """The model's price object from the packaged data (only single, unconditional prices used here)."""
    prov = next(p for p in data.providers if p.id == provider)
    info = next(m for m in prov.models if m.id == model)
    assert isinstance(info.prices, ModelPrice), f"{provider}/{model} has conditional prices; pick another case"
    return info.prices


def rate(value: Decimal | TieredPrices | None, total_input: int) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    applicable = value.base
    for tier in sorted(value.tiers, key=lambda t: t.start):
        if total_input > tier.start:
            applicable = tier.price
    return applicable


def expected(provider: str, model: str, inp: int, out: int, cr: int = 0, cw: int = 0) -> Decimal:
    p: Any = published(provider, model)
    cache_write = getattr(p, "cache_write_mtok", None)
    uncached = inp - cr - cw
    total = (uncached * rate(p.input_mtok, inp) + cr * rate(p.cache_read_mtok, inp)
             + cw * rate(cache_write, inp) + out * rate(p.output_mtok, inp))
    return total / MTOK


def llm_event(provider: str, model: str, inp: int, out: int, cr: int = 0, cw: int = 0) -> AICostEvent:
    return AICostEvent.model_validate({"id": "e", "time": WHEN, "data": {
        "team": "t", "project": "p", "source": "llm-api",
        "llm": {"provider": provider, "model": model, "input_tokens": inp, "output_tokens": out,
                "cache_read_tokens": cr, "cache_write_tokens": cw}}})


CASES = [
    pytest.param("openai", "gpt-4o", 12_345, 678, 0, 0, id="openai-plain"),
    pytest.param("openai", "gpt-4o", 10_000, 500, 7_777, 0, id="openai-cached-input"),
    pytest.param("openai", "gpt-4.1", 1_000_001, 33_333, 999_999, 0, id="openai-mostly-cached"),
    pytest.param("openai", "gpt-4o-mini", 3, 1, 1, 0, id="openai-tiny-fractions"),
    pytest.param("google", "gemini-2.5-flash", 50_000, 2_000, 20_000, 0, id="google-cached-input"),
    pytest.param("google", "gemini-2.5-pro", 150_000, 4_000, 30_000, 0, id="google-below-long-context-tier"),
    pytest.param("google", "gemini-2.5-pro", 250_000, 4_000, 30_000, 0, id="google-long-context-tier"),
    pytest.param("google", "gemini-1.5-pro", 128_001, 1_000, 0, 0, id="google-1.5-tier-boundary-crossed"),
    pytest.param("google", "gemini-1.5-pro", 128_000, 1_000, 0, 0, id="google-1.5-tier-boundary-exact"),
    pytest.param("anthropic", "claude-3-5-haiku-latest", 20_000, 1_000, 5_000, 3_000, id="anthropic-cache-read-and-write"),
    pytest.param("anthropic", "claude-opus-4-1", 9_000, 2_500, 0, 8_000, id="anthropic-cache-write"),
    pytest.param("anthropic", "claude-sonnet-4-5", 100_000, 5_000, 40_000, 10_000, id="anthropic-below-tier"),
    pytest.param("anthropic", "claude-sonnet-4-5", 300_000, 5_000, 40_000, 10_000, id="anthropic-long-context-tier"),
]


@pytest.mark.parametrize(("provider", "model", "inp", "out", "cr", "cw"), CASES)
def test_token_price_matches_published_prices_exactly(provider: str, model: str, inp: int, out: int, cr: int, cw: int) -> None:
    priced = ai_pricing.price(llm_event(provider, model, inp, out, cr, cw), ai_pricing.PriceTable())
    want = expected(provider, model, inp, out, cr, cw)
    assert priced.usd == want, f"{priced.usd} != {want}"
    assert priced.currency == "USD"
    assert priced.price_source.startswith("genai-prices ") and model in priced.price_source
    assert "MTok" in priced.price


def test_long_context_tier_changes_the_price() -> None:
    """The tier cases really exercise a tier (guards against a data change making them vacuous)."""
    p: Any = published("anthropic", "claude-sonnet-4-5")
    assert isinstance(p.input_mtok, TieredPrices) and rate(p.input_mtok, 300_000) != rate(p.input_mtok, 100_000)


def test_override_from_a_pricing_cr_replaces_genai_prices() -> None:
    cr = AICostPricing.model_validate({"metadata": {"name": "ours", "namespace": "finops"}, "spec": {"llm": [
        {"provider": "openai", "model": "GPT-4o", "inputMtok": "2", "outputMtok": "8", "cacheReadMtok": "0.5"}]}})
    priced = ai_pricing.price(llm_event("openai", "gpt-4o", 1_000, 100, 400), ai_pricing.price_table([cr]))
    assert priced.usd == (Decimal(600) * 2 + Decimal(400) * Decimal("0.5") + Decimal(100) * 8) / MTOK
    assert priced.price_source == "AICostPricing finops/ours"


def test_gpu_hours_and_fx_are_exact() -> None:
    cr = AICostPricing.model_validate({"metadata": {"name": "fx", "namespace": "finops"},
                                       "spec": {"fx": {"EUR": "1.0834"}, "gpu": [{"gpuType": "l4", "hourly": "0.71"}]}})
    table = ai_pricing.price_table([cr])
    gpu = AICostEvent.model_validate({"id": "g", "time": WHEN, "data": {"team": "t", "project": "p", "source": "gpu-job",
                                                                       "gpu": {"gpu_type": "NVIDIA L4", "count": 3, "duration_seconds": 1800}}})
    assert ai_pricing.price(gpu, table).usd == Decimal("0.71") * Decimal("1.5")
    cost = AICostEvent.model_validate({"id": "c", "time": WHEN, "data": {"team": "t", "project": "p", "source": "x",
                                                                        "cost": {"amount": "19.99", "currency": "eur"}}})
    priced = ai_pricing.price(cost, table)
    assert (priced.amount, priced.currency, priced.usd) == (Decimal("19.99"), "EUR", Decimal("19.99") * Decimal("1.0834"))


def test_unknown_model_is_refused_naming_the_field() -> None:
    with pytest.raises(ai_pricing.PricingError) as info:
        ai_pricing.price(llm_event("openai", "no-such-model-xyz", 10, 1), ai_pricing.PriceTable())
    assert info.value.errors[0].loc == "data.llm.model"
