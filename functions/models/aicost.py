"""AI/ML cost events and the two CRs that steer them: `AICostBudget` and `AICostPricing`.

An AI cost event is a CloudEvent of type `io.finops.aicost.usage` (see functions/events.py) whose
`data` is an `AICostUsage`: who spent (team, project, source) and either a cost already known
(`cost: {amount, currency}`) or usage to price (`gpu: {...}` or `llm: {...}`). Fields we do not
know are kept as tags. The CloudEvent's `id` is the idempotency key and its `time` places the spend
in a charge period, a billing month and budget periods. `AICostEvent` is that pair, validated.

The JSON Schema of `AICostUsage` is published as schemas/aicost-event.json (`event_schema()`,
written by `python -m functions.models.crdgen crds` through `EXTRA_SCHEMAS`).
Money is `Decimal` end to end; CR prices and rates are strings on the wire (`"1.08"`) so YAML never
turns them into binary floats (plain numbers are accepted by the models too).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from functions.models.crs import _Resource
from functions.models.k8s import CamelModel

USAGE_TYPE = "io.finops.aicost.usage"
"""CloudEvent type of an incoming AI cost event (also in functions.events.AICOST_USAGE)."""
SERVICE_CATEGORY = "AI and Machine Learning"
RESERVED_TAGS = ("team", "project", "source")
_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
_UNSIGNED_PATTERN = r"^[0-9]+(\.[0-9]+)?$"


def _decimal(value: Any) -> Any:
    """Numbers and numeric strings -> Decimal via their text (1.1 stays 1.1, never 1.1000000000000000888)."""
    if isinstance(value, bool):
        raise ValueError("a number is required, not a boolean")
    if isinstance(value, int | float | str):
        try:
            out = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
        if not out.is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        return out
    return value


def _text(d: Decimal) -> str:
    return str(d)


Money = Annotated[
    Decimal, BeforeValidator(_decimal), PlainSerializer(_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_PATTERN,
                    "description": "A decimal number as a string, e.g. \"12.50\" (a plain number is accepted too)."}),
]
Price = Annotated[
    Decimal, BeforeValidator(_decimal), PlainSerializer(_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _UNSIGNED_PATTERN,
                    "description": "A non-negative decimal number as a string, e.g. \"3.75\"."}),
]


class _Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Cost(_Usage):
    """A cost already known to the producer; kept in its currency, converted to USD by the FX table."""

    amount: Money = Field(description="Amount in `currency` (negative for credits).")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD, EUR.")

    @field_validator("currency", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v


class GpuUsage(_Usage):
    """GPU time: `count` GPUs of `gpu_type` for `hours` (or `duration_seconds`), priced per GPU-hour."""

    gpu_type: str = Field(min_length=1, description="GPU model, e.g. H100, A100-80GB, L4 (case-insensitive; spaces and _ read as -).")
    count: int = Field(default=1, ge=1, le=4096, description="Number of GPUs.")
    hours: Money | None = Field(default=None, description="Duration in hours (give this or duration_seconds).")
    duration_seconds: Money | None = Field(default=None, description="Duration in seconds (give this or hours).")

    @model_validator(mode="after")
    def _one_duration(self) -> GpuUsage:
        if (self.hours is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of hours or duration_seconds")
        if (self.gpu_hours_each()) < 0:
            raise ValueError("duration must not be negative")
        return self

    def gpu_hours_each(self) -> Decimal:
        return self.hours if self.hours is not None else Decimal(self.duration_seconds or 0) / Decimal(3600)

    def gpu_hours(self) -> Decimal:
        """Total GPU-hours: count x duration."""
        return self.gpu_hours_each() * self.count


class LlmUsage(_Usage):
    """Tokens of one or more LLM API calls, priced by genai-prices (or an AICostPricing override).

    `input_tokens` counts ALL input tokens, cached ones included (genai-prices' convention, as in
    OpenAI's `prompt_tokens`); for Anthropic add `cache_read_input_tokens` and
    `cache_creation_input_tokens` to its `input_tokens`.
    """

    provider: str = Field(min_length=1, description="genai-prices provider id, e.g. openai, anthropic, google.")
    model: str = Field(min_length=1, description="Model name as the API reports it, e.g. gpt-4o, claude-sonnet-4-5.")
    input_tokens: int = Field(default=0, ge=0, description="All input tokens, cache reads and writes included.")
    output_tokens: int = Field(default=0, ge=0, description="Output tokens.")
    cache_read_tokens: int = Field(default=0, ge=0, description="Input tokens read from the prompt cache.")
    cache_write_tokens: int = Field(default=0, ge=0, description="Input tokens written to the prompt cache.")

    @model_validator(mode="after")
    def _cached_within_input(self) -> LlmUsage:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cache_read_tokens + cache_write_tokens must not exceed input_tokens (which includes them)")
        return self


class AICostUsage(BaseModel):
    """The `data` of an `io.finops.aicost.usage` CloudEvent. Unknown fields are kept as tags."""

    model_config = ConfigDict(extra="allow", title="AI cost event data (CloudEvent type io.finops.aicost.usage)")
    team: str = Field(min_length=1, max_length=200, description="Team that spent (a tag, and a label of the metric).")
    project: str = Field(min_length=1, max_length=200, description="Project (a tag and a metric label).")
    source: str = Field(min_length=1, max_length=200, description="Kind of spend, e.g. gpu-job, llm-api, inference, training.")
    cost: Cost | None = Field(default=None, description="A cost already known (give exactly one of cost, gpu, llm).")
    gpu: GpuUsage | None = Field(default=None, description="GPU usage to price per GPU-hour.")
    llm: LlmUsage | None = Field(default=None, description="LLM token usage to price per token.")

    @model_validator(mode="after")
    def _exactly_one(self) -> AICostUsage:
        given = [n for n in ("cost", "gpu", "llm") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of cost, gpu or llm (got {', '.join(given) or 'none'})")
        return self

    def tags(self) -> dict[str, str]:
        """team/project/source plus every unknown field (non-text values as JSON text)."""
        out = {"team": self.team, "project": self.project, "source": self.source}
        for key, value in (self.model_extra or {}).items():
            if key not in out:
                out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return out


class AICostEvent(BaseModel):
    """One validated AI cost event: the CloudEvent's id and time plus its data."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=512, description="CloudEvent id: the idempotency key.")
    time: datetime = Field(description="CloudEvent time (RFC 3339): when the spend happened.")
    data: AICostUsage = Field(description="What was spent.")

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time needs a time zone (RFC 3339, e.g. 2025-01-31T12:00:00Z)")
        return v.astimezone(UTC)


def event_schema() -> dict[str, Any]:
    """JSON Schema of the event data (schemas/aicost-event.json)."""
    schema = AICostUsage.model_json_schema()
    schema["$id"] = "https://finops-functions.dev/schemas/aicost-event.json"
    schema["description"] = (
        "data of a CloudEvent of type io.finops.aicost.usage. The CloudEvent's id is the idempotency key "
        "(redelivery never double-counts) and its time (RFC 3339) places the spend in its period. "
        "Give exactly one of cost, gpu or llm; any other field is kept as a tag."
    )
    return schema


# ---------------------------------------------------------------- CRs


class AICostBudgetSpec(CamelModel):
    team: str | None = Field(default=None, description="Only this team's spend (any team when empty).")
    project: str | None = Field(default=None, description="Only this project's spend (any project when empty).")
    source: str | None = Field(default=None, description="Only this source's spend, e.g. gpu-job (any when empty).")
    amount: Price = Field(description="Budget in USD per period, as a string, e.g. \"1000\".")
    period: Literal["day", "week", "month"] = Field(default="month", description="UTC calendar period, by event time (weeks start on Monday).")
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0], min_length=1, description="Fractions of amount that raise io.finops.budget.exceeded once per period, e.g. [0.5, 0.8, 1.0].")

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(t <= 0 for t in v):
            raise ValueError("thresholds must be positive fractions of amount, e.g. 0.8")
        return sorted(set(v))

    def scope(self) -> dict[str, str | None]:
        return {"team": self.team, "project": self.project, "source": self.source}

    def matches(self, data: AICostUsage) -> bool:
        """Whether an event's spend counts against this budget."""
        return all(v is None or getattr(data, k) == v for k, v in self.scope().items())

    def period_of(self, t: datetime) -> tuple[datetime, datetime, str]:
        """The UTC calendar period holding t: (start, end exclusive, label like 2025-01-31, 2025-W05, 2025-01)."""
        return period_bounds(self.period, t)


def period_bounds(period: str, t: datetime) -> tuple[datetime, datetime, str]:
    """UTC calendar day, ISO week (Monday first) or month holding t, and its label."""
    t = t.astimezone(UTC)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if period == "day":
        return day, day + timedelta(days=1), day.strftime("%Y-%m-%d")
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return start, start + timedelta(days=7), f"{year}-W{week:02d}"
    start = datetime(t.year, t.month, 1, tzinfo=UTC)
    end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return start, end, start.strftime("%Y-%m")


class AICostBudget(_Resource):
    """A spend limit on AI costs; crossing each threshold emits io.finops.budget.exceeded once per period."""

    KIND: ClassVar[str] = "AICostBudget"
    PLURAL: ClassVar[str] = "aicostbudgets"
    kind: Literal["AICostBudget"] = Field(default="AICostBudget", description="Kind.")
    spec: AICostBudgetSpec = Field(description="Scope, amount, period and thresholds.")


class LlmPrice(CamelModel):
    """A per-token price for one model, replacing genai-prices' (no long-context tiers)."""

    provider: str = Field(min_length=1, description="Provider id as in events, e.g. openai.")
    model: str = Field(min_length=1, description="Model name as in events (exact, case-insensitive).")
    input_mtok: Price = Field(description="USD per million uncached input tokens.")
    output_mtok: Price = Field(description="USD per million output tokens.")
    cache_read_mtok: Price | None = Field(default=None, description="USD per million cache-read tokens (input_mtok when empty).")
    cache_write_mtok: Price | None = Field(default=None, description="USD per million cache-write tokens (input_mtok when empty).")


class GpuPrice(CamelModel):
    gpu_type: str = Field(min_length=1, description="GPU model, e.g. H100 (matched case-insensitively).")
    hourly: Price = Field(description="USD per GPU-hour.")


class AICostPricingSpec(CamelModel):
    llm: list[LlmPrice] = Field(default_factory=list, description="Token price overrides per (provider, model).")
    gpu: list[GpuPrice] = Field(default_factory=list, description="GPU-hour price overrides (and new GPU types).")
    fx: dict[str, Price] = Field(default_factory=dict, description="USD per one unit of each currency, e.g. {EUR: \"1.08\"}; USD is always 1.")

    @field_validator("fx")
    @classmethod
    def _codes(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [k for k in v if not (len(k) == 3 and k.isalpha())]
        if bad:
            raise ValueError(f"fx keys must be ISO 4217 codes, got {bad}")
        return {k.upper(): rate for k, rate in v.items()}


class AICostPricing(_Resource):
    """Price overrides and the FX table, read on every ingest: change prices without redeploying."""

    KIND: ClassVar[str] = "AICostPricing"
    PLURAL: ClassVar[str] = "aicostpricings"
    kind: Literal["AICostPricing"] = Field(default="AICostPricing", description="Kind.")
    spec: AICostPricingSpec = Field(description="Token and GPU price overrides and currency rates.")


AICOST_KINDS: dict[str, type[_Resource]] = {m.KIND: m for m in (AICostBudget, AICostPricing)}


def render_event_schema() -> str:
    """schemas/aicost-event.json's text (written by `task crds` with the CRDs)."""
    return json.dumps(event_schema(), indent=2, ensure_ascii=False) + "\n"

