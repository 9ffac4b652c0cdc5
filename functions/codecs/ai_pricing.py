"""Price AI cost events exactly (Decimal): LLM tokens by genai-prices, GPU-hours by our table, FX to USD.

Pure functions, no I/O: the stage reads the AICostPricing CRs and hands them to `price_table()`.
Every `Priced` says which price was used and where it came from, so a row can be audited later.

LLM tokens: `genai_prices.calc_price` with the event's time (prices change over time), which covers
uncached input, cache reads, cache writes, output and long-context tiers (a tier, once crossed by the
total input tokens, applies to all tokens). An AICostPricing `llm` entry replaces the price of one
(provider, model) with flat per-million-token prices, computed with genai-prices' own `ModelPrice`.

GPU-hours: `GPU_PRICES` below, on-demand list prices per GPU-hour in USD (see each entry's source),
overridden or extended by AICostPricing `gpu` entries. They are a default for laptops and demos:
production installs set their own negotiated prices.

Currencies: totals are USD. A known cost in another currency is converted with the FX table (USD per
unit, from AICostPricing `fx`); a currency without a rate is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib.metadata import version

from genai_prices import Usage, calc_price
from genai_prices.types import ModelPrice

from functions.errors import FieldError
from functions.models.aicost import AICostEvent, AICostPricing, Cost, GpuUsage, LlmUsage

MILLION = Decimal(1_000_000)
GENAI_PRICES = f"genai-prices {version('genai-prices')}"


@dataclass(frozen=True)
class GpuListPrice:
    hourly: Decimal
    source: str


_AWS = "AWS EC2 on-demand, us-east-1, Linux, instance price / GPUs"
_GCP = "Google Cloud GPU price, us-central1, on-demand, GPU only"
GPU_PRICES: dict[str, GpuListPrice] = {
    "H100": GpuListPrice(Decimal("12.29"), f"{_AWS}: p5.48xlarge $98.32 / 8 (list before the June 2025 cut)"),
    "H200": GpuListPrice(Decimal("10.60"), f"{_AWS}: p5en.48xlarge $84.80 / 8"),
    "A100-80GB": GpuListPrice(Decimal("5.12"), f"{_AWS}: p4de.24xlarge $40.9657 / 8"),
    "A100-40GB": GpuListPrice(Decimal("4.10"), f"{_AWS}: p4d.24xlarge $32.7726 / 8"),
    "A10G": GpuListPrice(Decimal("1.006"), f"{_AWS}: g5.xlarge $1.006 / 1"),
    "L4": GpuListPrice(Decimal("0.8048"), f"{_AWS}: g6.xlarge $0.8048 / 1"),
    "T4": GpuListPrice(Decimal("0.35"), f"{_GCP}: NVIDIA T4 $0.35"),
    "V100": GpuListPrice(Decimal("2.48"), f"{_GCP}: NVIDIA V100 $2.48"),
}
"""Shipped GPU-hour prices (USD). Override any of them, or add types, with an AICostPricing CR."""
_GPU_ALIASES = {"A100": "A100-40GB", "A100-40G": "A100-40GB", "A100-80G": "A100-80GB", "H100-80GB": "H100",
                "V100-16GB": "V100", "H200-141GB": "H200"}


def gpu_key(gpu_type: str) -> str:
    """Normalise a GPU type: upper case, spaces and _ as -, a leading vendor word dropped (NVIDIA H100 -> H100)."""
    key = gpu_type.strip().upper().replace("_", "-").replace(" ", "-")
    for vendor in ("NVIDIA-", "TESLA-"):
        key = key.removeprefix(vendor)
    return _GPU_ALIASES.get(key, key)


@dataclass(frozen=True)
class LlmOverride:
    price: ModelPrice
    source: str


@dataclass(frozen=True)
class PriceTable:
    """Everything pricing needs besides genai-prices' data: GPU prices, LLM overrides, FX rates."""

    gpu: dict[str, GpuListPrice] = field(default_factory=lambda: dict(GPU_PRICES))
    llm: dict[tuple[str, str], LlmOverride] = field(default_factory=dict)
    fx: dict[str, tuple[Decimal, str]] = field(default_factory=lambda: {"USD": (Decimal(1), "identity")})


def price_table(pricings: Iterable[AICostPricing]) -> PriceTable:
    """Merge AICostPricing CRs over the shipped defaults, in (namespace, name) order: later ones win."""
    table = PriceTable()
    for cr in sorted(pricings, key=lambda c: (c.metadata.namespace, c.metadata.name)):
        source = f"AICostPricing {c_ref(cr)}"
        for g in cr.spec.gpu:
            table.gpu[gpu_key(g.gpu_type)] = GpuListPrice(g.hourly, source)
        for p in cr.spec.llm:
            mp = ModelPrice(input_mtok=p.input_mtok, output_mtok=p.output_mtok,
                            cache_read_mtok=p.cache_read_mtok if p.cache_read_mtok is not None else p.input_mtok,
                            cache_write_mtok=p.cache_write_mtok if p.cache_write_mtok is not None else p.input_mtok)
            table.llm[(p.provider.lower(), p.model.lower())] = LlmOverride(mp, source)
        for code, rate in cr.spec.fx.items():
            if code != "USD":
                table.fx[code] = (rate, source)
    return table


def c_ref(cr: AICostPricing) -> str:
    return f"{cr.metadata.namespace}/{cr.metadata.name}"


@dataclass(frozen=True)
class Priced:
    """The cost of one event, in its own currency and in USD, with the price used and its source."""

    amount: Decimal
    currency: str
    usd: Decimal
    price: str
    price_source: str
    fx_rate: Decimal
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    provider: str
    sku: str


class PricingError(ValueError):
    """An event that cannot be priced: every reason as FieldErrors (locations inside the event data)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.loc}: {e.msg}" for e in errors))
        self.errors = errors


def price(event: AICostEvent, table: PriceTable) -> Priced:
    """Price one validated event; PricingError names what is missing (model, GPU type, FX rate)."""
    data = event.data
    if data.cost is not None:
        return _known(data.cost, table)
    if data.gpu is not None:
        return _gpu(data.gpu, table)
    assert data.llm is not None  # the model guarantees exactly one of cost, gpu, llm
    return _llm(data.llm, event.time, table)


def _known(cost: Cost, table: PriceTable) -> Priced:
    rate = table.fx.get(cost.currency)
    if rate is None:
        known = ", ".join(sorted(table.fx))
        raise PricingError([FieldError("data.cost.currency", f"no FX rate for {cost.currency} (known: {known}); add it to an AICostPricing's spec.fx as USD per 1 {cost.currency}")])
    fx, source = rate
    return Priced(cost.amount, cost.currency, cost.amount * fx, f"{fx} USD/{cost.currency}", f"event cost; FX {source}",
                  fx, Decimal(1), "event", None, "", "")


def _gpu(gpu: GpuUsage, table: PriceTable) -> Priced:
    key = gpu_key(gpu.gpu_type)
    listed = table.gpu.get(key)
    if listed is None:
        raise PricingError([FieldError("data.gpu.gpu_type", f"no price for GPU type {gpu.gpu_type!r} (known: {', '.join(sorted(table.gpu))}); add it to an AICostPricing's spec.gpu")])
    hours = gpu.gpu_hours()
    usd = hours * listed.hourly
    return Priced(usd, "USD", usd, f"{listed.hourly} USD/GPU-hour", listed.source, Decimal(1), hours, "GPU-hour",
                  listed.hourly, "GPU", key)


_PRICE_TEXT: dict[int, tuple[object, str]] = {}


def _price_text(model_price: object) -> str:
    """genai-prices' ModelPrice text, cached per price object: rendering it was half the cost per event."""
    hit = _PRICE_TEXT.get(id(model_price))
    if hit is not None and hit[0] is model_price:
        return hit[1]
    text = str(model_price)
    _PRICE_TEXT[id(model_price)] = (model_price, text)  # keeps the object alive, so its id stays unique
    return text


def _llm(llm: LlmUsage, when: datetime, table: PriceTable) -> Priced:
    usage = Usage(input_tokens=llm.input_tokens, output_tokens=llm.output_tokens,
                  cache_read_tokens=llm.cache_read_tokens, cache_write_tokens=llm.cache_write_tokens)
    override = table.llm.get((llm.provider.lower(), llm.model.lower()))
    if override is not None:
        total = Decimal(override.price.calc_price(usage)["total_price"])
        price_text, source, sku = str(override.price), override.source, llm.model
    else:
        try:
            calc = calc_price(usage, model_ref=llm.model, provider_id=llm.provider, genai_request_timestamp=when)
        except LookupError as exc:
            loc = "data.llm.provider" if str(exc).startswith("Unable to find provider") else "data.llm.model"
            raise PricingError([FieldError(loc, f"{exc} ({GENAI_PRICES}); set a price in an AICostPricing's spec.llm")]) from exc
        total = Decimal(calc.total_price)
        price_text, source, sku = _price_text(calc.model_price), f"{GENAI_PRICES} {calc.provider.id}/{calc.model.id}", calc.model.id
    tokens = Decimal(llm.input_tokens + llm.output_tokens)
    return Priced(total, "USD", total, price_text, source, Decimal(1), tokens, "token", None, llm.provider, sku)
