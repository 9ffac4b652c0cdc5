"""FocusConfig (`finops.krateo.io/v1`): one hand-written FOCUS row per CR (Krateo's finops-data-types).

FOCUS_FIELDS lists the 50 fields (Krateo's JSON names and Go order, including the misspelled
`commitmentDiscoutId`). It equals functions.codecs.focusconfig_json.FOCUS_FIELDS, which models may
not import (layers: codecs -> models); a test keeps the two identical. Types and required fields follow Krateo's CRD; the value
rules are Krateo's "contains word, first letter either case" patterns, widened to accept what
FOCUS itself allows and Krateo's typos reject (`Used`, `Spend`, `Credit`, `Standard`, `Committed`,
`Business Applications`). Quantities are Kubernetes quantities (int or string in the CRD, like
Krateo; the model also takes bare decimals). Times are RFC 3339.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, create_model, field_validator, model_validator

from functions.models.crs import ConditionedStatus, ScraperConfigSpec, _Resource
from functions.models.k8s import CamelModel

S, Q, T, L = "string", "quantity", "time", "tags"

FOCUS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("availabilityZone", "AvailabilityZone", S), ("billedCost", "BilledCost", Q),
    ("billingAccountId", "BillingAccountId", S), ("billingAccountName", "BillingAccountName", S),
    ("billingCurrency", "BillingCurrency", S), ("billingPeriodEnd", "BillingPeriodEnd", T),
    ("billingPeriodStart", "BillingPeriodStart", T), ("capacityReservationId", "CapacityReservationId", S),
    ("capacityReservationStatus", "CapacityReservationStatus", S), ("chargeCategory", "ChargeCategory", S),
    ("chargeClass", "ChargeClass", S), ("chargeDescription", "ChargeDescription", S),
    ("chargeFrequency", "ChargeFrequency", S), ("chargePeriodEnd", "ChargePeriodEnd", T),
    ("chargePeriodStart", "ChargePeriodStart", T), ("commitmentDiscountCategory", "CommitmentDiscountCategory", S),
    ("commitmentDiscoutId", "CommitmentDiscountId", S),  # sic: Krateo's JSON name is misspelled
    ("commitmentDiscountType", "CommitmentDiscountType", S),
    ("commitmentDiscountStatus", "CommitmentDiscountStatus", S),
    ("commitmentDiscountName", "CommitmentDiscountName", S),
    ("commitmentDiscountQuantity", "CommitmentDiscountQuantity", Q),
    ("commitmentDiscountUnit", "CommitmentDiscountUnit", S), ("consumedQuantity", "ConsumedQuantity", Q),
    ("consumedUnit", "ConsumedUnit", S), ("contractedCost", "ContractedCost", Q),
    ("contractedUnitCost", "ContractedUnitCost", Q), ("effectiveCost", "EffectiveCost", Q),
    ("invoiceIssuerName", "InvoiceIssuerName", S), ("listCost", "ListCost", Q),
    ("listUnitPrice", "ListUnitPrice", Q), ("pricingCategory", "PricingCategory", S),
    ("pricingQuantity", "PricingQuantity", Q), ("pricingUnit", "PricingUnit", S),
    ("providerName", "ProviderName", S), ("publisherName", "PublisherName", S),
    ("regionId", "RegionId", S), ("regionName", "RegionName", S), ("resourceId", "ResourceId", S),
    ("resourceName", "ResourceName", S), ("resourceType", "ResourceType", S),
    ("serviceCategory", "ServiceCategory", S), ("serviceName", "ServiceName", S),
    ("serviceSubcategory", "ServiceSubcategory", S), ("skuId", "SkuId", S), ("skuMeter", "SkuMeter", S),
    ("skuPriceDetails", "SkuPriceDetails", L), ("skuPriceId", "SkuPriceId", S),
    ("subAccountId", "SubAccountId", S), ("subAccountName", "SubAccountName", S), ("tags", "Tags", L),
)
"""(JSON field, CSV/DB column, kind) in Go declaration order = Krateo's column order (50 fields)."""

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""The Kubernetes resource.Quantity pattern controller-gen writes into Krateo's CRD."""

NULLABLE_QUANTITY_PATTERN = QUANTITY_PATTERN + r"|^(NULL|null)?$"
"""Quantities FOCUS lets be null also take the FOCUS null (`NULL`, `null`, empty): a credit's
consumedQuantity (required by Krateo's CRD) has no value, and Krateo's pattern forced a fake 0."""

NOT_NULLABLE: frozenset[str] = frozenset({"billedCost", "effectiveCost", "listCost", "contractedCost"})
"""The FOCUS cost columns that must not be null: their quantities refuse the FOCUS null."""

REQUIRED: frozenset[str] = frozenset({
    "billedCost", "billingCurrency", "billingPeriodEnd", "billingPeriodStart", "chargeCategory",
    "chargeDescription", "chargePeriodEnd", "chargePeriodStart", "consumedQuantity", "consumedUnit",
    "invoiceIssuerName", "serviceCategory",
})
"""Required FOCUS fields of Krateo's FocusConfig CRD (finops-data-types)."""

WORDS: dict[str, tuple[str, ...]] = {
    "capacityReservationStatus": ("Used", "Unused"),
    "chargeCategory": ("Adjustment", "Credit", "Purchase", "Tax", "Usage"),
    "chargeClass": ("Correction",),
    "chargeFrequency": ("One-Time", "OneTime", "Recurring", "Usage-Based", "UsageBased"),
    "commitmentDiscountCategory": ("Spend", "Usage"),
    "commitmentDiscountStatus": ("Used", "Unused"),
    "pricingCategory": ("On-Demand", "OnDemand", "Standard", "Dynamic", "Commitment-Based", "CommitmentBased",
                        "Committed", "Other"),
    "serviceCategory": (
        "AI and Machine Learning", "Analytics", "Business Applications", "Business", "Compute", "Databases",
        "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
        "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security", "Storage",
        "Web", "Other",
    ),
}
"""Allowed words per field (FOCUS 1.0-1.2 values plus Krateo's); matched as whole words, any case."""

_WORD_RE: dict[str, re.Pattern[str]] = {
    f: re.compile(r"\b(" + "|".join(re.escape(w) for w in ws) + r")\b", re.IGNORECASE) for f, ws in WORDS.items()
}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _any_case(word: str) -> str:
    """A regex for `word` in any case without flags (Kubernetes patterns have no `(?i)`)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _crd_pattern(field: str) -> str:
    alternatives = "|".join(_any_case(w) for w in WORDS[field])
    return rf"^$|\b({alternatives})\b"


def _quantity(value: Any) -> Any:
    """A Kubernetes quantity or a plain number; checked here, kept as written."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok or value is None or (isinstance(value, str) and _QUANTITY.match(value.strip())):
        return value
    raise ValueError(f"not a quantity: {value!r}: expected a number or a Kubernetes quantity such as 12.5, '1.5k', '100m'")


def _nullable_quantity(value: Any) -> Any:
    """A quantity, or the FOCUS null (`NULL`, `null`, empty), kept as written (stored as NULL)."""
    if isinstance(value, str) and value.strip() in ("", "NULL", "null"):
        return value
    return _quantity(value)


def _time(value: Any) -> Any:
    """RFC 3339 text (a YAML timestamp is turned back into text); checked here, kept as written.

    No FOCUS null here: the four period columns are the only times, and FOCUS forbids their nulls."""
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 time: {value!r}") from exc
    return value


Quantity = Annotated[
    int | float | str,
    BeforeValidator(_quantity),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN}),
]
NullableQuantity = Annotated[
    int | float | str,
    BeforeValidator(_nullable_quantity),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": NULLABLE_QUANTITY_PATTERN}),
]
Time = Annotated[str, BeforeValidator(_time), WithJsonSchema({"type": "string", "format": "date-time"})]


class TagsType(CamelModel):
    key: str = Field(description="Tag key.")
    value: str = Field(description="Tag value.")


def _field_definition(name: str, column: str, kind: str) -> tuple[Any, Any]:
    """(type, FieldInfo) of one FOCUS field for create_model."""
    required = name in REQUIRED
    desc = f"FOCUS {column}" + (" (required)." if required else ".")
    types: dict[str, Any] = {"string": str, "quantity": Quantity, "time": Time, "tags": list[TagsType]}
    typ = NullableQuantity if kind == "quantity" and name not in NOT_NULLABLE else types[kind]
    extra: dict[str, Any] = {}
    if name in WORDS:
        desc += " One of: " + ", ".join(WORDS[name]) + " (any case; Krateo's contains-word rule)."
        extra["pattern"] = _crd_pattern(name)
    if name == "billingCurrency":
        extra["pattern"] = _CURRENCY.pattern
    if name == "commitmentDiscoutId":
        desc += " The JSON name is misspelled, as in Krateo."
    schema_extra = extra or None
    if required:
        return typ, Field(alias=name, description=desc, json_schema_extra=schema_extra)
    # Not `| None`: an explicit null is dropped before validation (as the API server prunes it),
    # so the schema stays one plain type per field.
    return typ, Field(default=None, alias=name, description=desc, json_schema_extra=schema_extra)


def _drop_nulls(cls: Any, data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


def _word_rule(cls: Any, value: Any, info: Any) -> Any:
    name = _ALIASES[info.field_name]
    if isinstance(value, str) and value.strip():
        if name in _WORD_RE and not _WORD_RE[name].search(value):
            raise ValueError(f"must contain one of {', '.join(WORDS[name])} (any case), got {value!r}")
        if name == "billingCurrency" and not _CURRENCY.match(value):
            raise ValueError(f"must be an ISO 4217 code of three upper-case letters, got {value!r}")
    elif name == "billingCurrency":
        raise ValueError("must be an ISO 4217 code of three upper-case letters")
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_FIELDS: dict[str, Any] = {_snake(name): _field_definition(name, column, kind) for name, column, kind in FOCUS_FIELDS}
_ALIASES = {_snake(name): name for name, _, _ in FOCUS_FIELDS}
_CHECKED = [_snake(n) for n in (*WORDS, "billingCurrency")]

_VALIDATORS: dict[str, Any] = {
    "_nulls": model_validator(mode="before")(_drop_nulls),
    "_words": field_validator(*_CHECKED, mode="after")(_word_rule),
}

FocusSpec: type[CamelModel] = create_model(  # the 50 fields are data, not 50 hand-written lines
    "FocusSpec",
    __base__=CamelModel,
    __doc__="The FOCUS columns of one row, with Krateo's JSON names.",
    __validators__=_VALIDATORS,
    **_FIELDS,
)


if TYPE_CHECKING:  # mypy sees a plain model; pydantic sees the generated one
    _FocusSpecType = CamelModel
else:
    _FocusSpecType = FocusSpec


class FocusConfigSpec(CamelModel):
    focus_spec: _FocusSpecType = Field(description="The FOCUS row.")
    scraper_config: ScraperConfigSpec | None = Field(
        default=None,
        description="Where the row goes: tableName and scraperDatabaseConfigRef (pollingInterval is accepted; rows are written on every change, not polled).",
    )


class FocusConfigStatus(ConditionedStatus):
    group_key: str | None = Field(default=None, description="Krateo's grouping key (<db ns>..<db name>..<table>); kept for compatibility.")


class FocusConfig(_Resource):
    KIND: ClassVar[str] = "FocusConfig"
    PLURAL: ClassVar[str] = "focusconfigs"
    kind: Literal["FocusConfig"] = Field(default="FocusConfig", description="Kind.")
    spec: FocusConfigSpec = Field(description="A FOCUS row and where to store it.")
    status: FocusConfigStatus | None = Field(default=None, description="Observed state.")

    def focus_values(self) -> dict[str, Any]:
        """The FOCUS fields by Krateo JSON name, as written (unset fields absent)."""
        dumped: dict[str, Any] = self.spec.focus_spec.model_dump(by_alias=True, exclude_none=True)
        return dumped


FOCUS_KINDS: dict[str, type[_Resource]] = {FocusConfig.KIND: FocusConfig}
