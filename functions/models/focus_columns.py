"""The FOCUS column catalogue, FOCUS 1.0 to 1.3 (Cost and Usage dataset): the single source of truth.

Why one catalogue: the cost table's columns and types (functions.storage.tables), the conformance
findings (functions.codecs.focus_conformance) and docs/focus-columns.md must agree on which columns
FOCUS has, which version brought them, which are mandatory and which values are allowed; three
hand-kept lists drift apart as FOCUS moves on.

Transcribed from the FOCUS specification texts of each column (Column ID, feature level, "Allows
nulls", data type, "Introduced (version)", allowed values) and the FOCUS changelog's column
history. Where a column's constraint table and its normative text disagree (PricingCurrency and
PricingCurrencyEffectiveCost: table "Allows nulls: True", text "MUST NOT be null") the normative
text wins. HostProviderName keeps its table's "Allows nulls: True" (the FOCUS 1.4 data model agrees),
so a null there is never reported as an error. x_ custom columns are not FOCUS columns and are not
listed. Pure data and tiny helpers: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

FocusVersion = Literal["1.0", "1.1", "1.2", "1.3"]
VERSIONS: tuple[FocusVersion, ...] = ("1.0", "1.1", "1.2", "1.3")
"""The FOCUS versions the catalogue covers, oldest first."""

LATEST: FocusVersion = "1.3"

DataType = Literal["Decimal", "Date/Time", "String", "JSON"]
"""FOCUS data types; JSON = a JSON object in KeyValueFormat (Tags, SkuPriceDetails, ...)."""

FeatureLevel = Literal["Mandatory", "Conditional", "Recommended"]
"""Mandatory: MUST be present. Conditional: MUST be present when `condition` holds.
Recommended: SHOULD be present (when `condition` holds, if it has one)."""


@dataclass(frozen=True)
class FocusColumn:
    """One FOCUS column as the specification defines it.

    `introduced` is the specification's own "Introduced (version)" (0.5 and 1.0-preview predate
    the catalogue: such columns are in every catalogued version). `allowed` maps each version that
    has the column to its allowed values; empty when FOCUS leaves the values to the provider.
    """

    name: str
    data_type: DataType
    introduced: str
    feature_level: FeatureLevel
    nullable: bool
    condition: str | None = None
    deprecated: FocusVersion | None = None
    replaced_by: str | None = None
    renamed_from: str | None = None
    should_not_be_null: bool = False
    allowed: Mapping[FocusVersion, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def since(self) -> FocusVersion:
        """The first catalogued version that has the column."""
        return first_version(self.introduced)

    def in_version(self, version: FocusVersion) -> bool:
        """Whether `version` defines the column (no column was removed before FOCUS 1.4)."""
        return version_key(self.since) <= version_key(version)

    def allowed_in(self, version: FocusVersion) -> tuple[str, ...]:
        """The allowed values in `version` (empty: any value)."""
        return self.allowed.get(version, ())


def version_key(version: str) -> tuple[int, int, int]:
    """Sort key of a FOCUS version: 0.5 < 1.0-preview < 1.0 < 1.1 < 1.2 < 1.3."""
    base, _, suffix = version.partition("-")
    major, _, minor = base.partition(".")
    return int(major), int(minor or 0), 0 if suffix else 1


def first_version(introduced: str) -> FocusVersion:
    """The first catalogued version at or after `introduced` (0.5 and 1.0-preview columns: 1.0)."""
    for v in VERSIONS:
        if version_key(introduced) <= version_key(v):
            return v
    raise ValueError(f"FOCUS version {introduced!r} is newer than the catalogue ({LATEST})")


def _since(values: tuple[str, ...], since: FocusVersion = "1.0") -> Mapping[FocusVersion, tuple[str, ...]]:
    """The same allowed values in every catalogued version from `since` on."""
    return MappingProxyType({v: values for v in VERSIONS if version_key(since) <= version_key(v)})


_COMMITMENT = "the provider supports commitment discounts"
_USAGE = "the provider supports the measurement of usage"
_RESOURCES = "the provider supports billing based on provisioned resources"
_REGIONS = "the provider supports deploying resources or services within a region"
_SKUS = "the provider publishes a SKU list"
_SUB_ACCOUNTS = "the provider supports a sub account construct"
_CAPACITY = "the provider supports capacity reservations"
_CURRENCIES = "the provider supports pricing and billing in different currencies"
_VIRTUAL = "the provider supports prices in virtual currency and publishes unit prices exclusive of discounts"
_SPLIT = "the provider supports provider-calculated split cost allocation"

_USED_UNUSED = ("Used", "Unused")
SERVICE_CATEGORIES: tuple[str, ...] = (
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
    "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
    "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security", "Storage",
    "Web", "Other",
)

M: FeatureLevel = "Mandatory"
C: FeatureLevel = "Conditional"
R: FeatureLevel = "Recommended"

CATALOGUE: tuple[FocusColumn, ...] = (
    FocusColumn("AllocatedMethodDetails", "JSON", "1.3", R, True, _SPLIT),
    FocusColumn("AllocatedMethodId", "String", "1.3", C, True, _SPLIT),
    FocusColumn("AllocatedResourceId", "String", "1.3", C, True, _SPLIT),
    FocusColumn("AllocatedResourceName", "String", "1.3", C, True, _SPLIT),
    FocusColumn("AllocatedTags", "JSON", "1.3", C, True, _SPLIT),
    FocusColumn("AvailabilityZone", "String", "0.5", R, True,
                "the provider supports deploying resources or services within an availability zone"),
    FocusColumn("BilledCost", "Decimal", "0.5", M, False),
    FocusColumn("BillingAccountId", "String", "0.5", M, False),
    FocusColumn("BillingAccountName", "String", "0.5", M, True),
    FocusColumn("BillingAccountType", "String", "1.2", C, False,
                "the provider supports more than one possible BillingAccountType value"),
    FocusColumn("BillingCurrency", "String", "0.5", M, False),
    FocusColumn("BillingPeriodEnd", "Date/Time", "0.5", M, False),
    FocusColumn("BillingPeriodStart", "Date/Time", "0.5", M, False),
    FocusColumn("CapacityReservationId", "String", "1.1", C, True, _CAPACITY),
    FocusColumn("CapacityReservationStatus", "String", "1.1", C, True, _CAPACITY,
                allowed=_since(_USED_UNUSED, "1.1")),
    FocusColumn("ChargeCategory", "String", "1.0-preview", M, False, renamed_from="ChargeType",
                allowed=_since(("Usage", "Purchase", "Tax", "Credit", "Adjustment"))),
    FocusColumn("ChargeClass", "String", "1.0", M, True, allowed=_since(("Correction",))),
    FocusColumn("ChargeDescription", "String", "1.0-preview", M, True, should_not_be_null=True),
    FocusColumn("ChargeFrequency", "String", "1.0-preview", R, False,
                allowed=_since(("One-Time", "Recurring", "Usage-Based"))),
    FocusColumn("ChargePeriodEnd", "Date/Time", "0.5", M, False),
    FocusColumn("ChargePeriodStart", "Date/Time", "0.5", M, False),
    FocusColumn("CommitmentDiscountCategory", "String", "1.0-preview", C, True, _COMMITMENT,
                allowed=_since(("Spend", "Usage"))),
    FocusColumn("CommitmentDiscountId", "String", "1.0-preview", C, True, _COMMITMENT),
    FocusColumn("CommitmentDiscountName", "String", "1.0-preview", C, True, _COMMITMENT),
    FocusColumn("CommitmentDiscountQuantity", "Decimal", "1.1", C, True, _COMMITMENT),
    FocusColumn("CommitmentDiscountStatus", "String", "1.0", C, True, _COMMITMENT, allowed=_since(_USED_UNUSED)),
    FocusColumn("CommitmentDiscountType", "String", "1.0-preview", C, True, _COMMITMENT),
    FocusColumn("CommitmentDiscountUnit", "String", "1.1", C, True, _COMMITMENT),
    FocusColumn("ConsumedQuantity", "Decimal", "1.0", C, True, _USAGE, renamed_from="UsageQuantity"),
    FocusColumn("ConsumedUnit", "String", "1.0", C, True, _USAGE, renamed_from="UsageUnit"),
    FocusColumn("ContractApplied", "JSON", "1.3", C, True, "the provider supports contract commitments"),
    FocusColumn("ContractedCost", "Decimal", "1.0", M, False),
    FocusColumn("ContractedUnitPrice", "Decimal", "1.0", C, True, "the provider supports negotiated pricing concepts"),
    FocusColumn("EffectiveCost", "Decimal", "1.0-preview", M, False, renamed_from="AmortizedCost"),
    FocusColumn("HostProviderName", "String", "1.3", M, True),
    FocusColumn("InvoiceId", "String", "1.2", R, True),
    FocusColumn("InvoiceIssuerName", "String", "0.5", M, False),
    FocusColumn("ListCost", "Decimal", "1.0-preview", M, False),
    FocusColumn("ListUnitPrice", "Decimal", "1.0-preview", C, True,
                "the provider publishes unit prices exclusive of discounts"),
    FocusColumn("PricingCategory", "String", "1.0-preview", C, True,
                "the provider supports more than one pricing category across all SKUs",
                allowed=_since(("Standard", "Dynamic", "Committed", "Other"))),
    FocusColumn("PricingCurrency", "String", "1.2", C, False, _CURRENCIES),
    FocusColumn("PricingCurrencyContractedUnitPrice", "Decimal", "1.2", C, True, _VIRTUAL),
    FocusColumn("PricingCurrencyEffectiveCost", "Decimal", "1.2", C, False, _VIRTUAL),
    FocusColumn("PricingCurrencyListUnitPrice", "Decimal", "1.2", C, True, _VIRTUAL),
    FocusColumn("PricingQuantity", "Decimal", "1.0-preview", M, True),
    FocusColumn("PricingUnit", "String", "1.0-preview", M, True),
    FocusColumn("ProviderName", "String", "0.5", M, False, deprecated="1.3", replaced_by="ServiceProviderName"),
    FocusColumn("PublisherName", "String", "0.5", M, False, deprecated="1.3"),
    FocusColumn("RegionId", "String", "1.0", C, True, _REGIONS, renamed_from="Region"),
    FocusColumn("RegionName", "String", "1.0", C, True, _REGIONS),
    FocusColumn("ResourceId", "String", "0.5", C, True, _RESOURCES),
    FocusColumn("ResourceName", "String", "0.5", C, True, _RESOURCES),
    FocusColumn("ResourceType", "String", "1.0-preview", C, True,
                "the provider supports billing based on provisioned resources and assigning types to resources"),
    FocusColumn("ServiceCategory", "String", "0.5", M, False, allowed=_since(SERVICE_CATEGORIES)),
    FocusColumn("ServiceName", "String", "0.5", M, False),
    FocusColumn("ServiceProviderName", "String", "1.3", M, False),
    FocusColumn("ServiceSubcategory", "String", "1.1", R, False),
    FocusColumn("SkuId", "String", "1.0-preview", C, True, _SKUS),
    FocusColumn("SkuMeter", "String", "1.1", C, True, _SKUS),
    FocusColumn("SkuPriceDetails", "JSON", "1.1", C, True, _SKUS),
    FocusColumn("SkuPriceId", "String", "1.0-preview", C, True, "the provider publishes a SKU price list"),
    FocusColumn("SubAccountId", "String", "0.5", C, True, _SUB_ACCOUNTS),
    FocusColumn("SubAccountName", "String", "0.5", C, True, _SUB_ACCOUNTS),
    FocusColumn("SubAccountType", "String", "1.2", C, True,
                "the provider supports more than one possible SubAccountType value"),
    FocusColumn("Tags", "JSON", "1.0-preview", C, True, "the provider supports setting user- or provider-defined tags"),
)
"""Every FOCUS 1.0-1.3 Cost and Usage column, by Column ID (the specification's alphabetical order)."""

RENAMED_VALUES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "PricingCategory": MappingProxyType({"On-Demand": "Standard", "Commitment-Based": "Committed"}),
})
"""Values FOCUS 1.0 renamed (1.0-preview name -> 1.0 name): still common in older exports."""

BY_NAME: Mapping[str, FocusColumn] = MappingProxyType({c.name: c for c in CATALOGUE})
BY_LOWER: Mapping[str, FocusColumn] = MappingProxyType({c.name.lower(): c for c in CATALOGUE})
"""Columns by lower-cased name: the cost table's names (Krateo's) and case-insensitive matching."""


def columns_in(version: FocusVersion) -> tuple[FocusColumn, ...]:
    """The columns `version` defines (deprecated ones included: they are still there)."""
    return tuple(c for c in CATALOGUE if c.in_version(version))


def new_in(version: FocusVersion) -> tuple[FocusColumn, ...]:
    """The columns that first appear in `version` (for 1.0: every column of FOCUS 1.0)."""
    return tuple(c for c in CATALOGUE if c.since == version)


def mandatory_in(version: FocusVersion) -> tuple[FocusColumn, ...]:
    """The columns that MUST be present in a `version` dataset."""
    return tuple(c for c in columns_in(version) if c.feature_level == "Mandatory")


def detect_version(names: Iterable[str]) -> FocusVersion:
    """The FOCUS version a header looks like, matched ignoring case.

    The highest version one of whose new columns is present (ServiceProviderName, HostProviderName,
    ContractApplied or an Allocated* column -> 1.3; InvoiceId, BillingAccountType, PricingCurrency*
    -> 1.2; SkuMeter, SkuPriceDetails, CapacityReservation*, CommitmentDiscountQuantity/Unit,
    ServiceSubcategory -> 1.1), else 1.0. A file only ever gains columns across versions, so the
    newest column it carries is the best evidence of the version it was written for.
    """
    present = {n.lower() for n in names}
    for version in reversed(VERSIONS[1:]):
        if any(c.name.lower() in present for c in new_in(version)):
            return version
    return "1.0"
