"""The FocusConfig and Notebook models: Krateo's names and rules, minus the typos that reject FOCUS values.

Cases:
- the 50 fields are Krateo's JSON names in Go order, equal to the exporter codec's list and to the
  cost table's first columns; the misspelled `commitmentDiscoutId` is the name (the correct spelling is refused);
- valid FOCUS values Krateo's patterns reject are accepted (`Used`, `Spend`, `Credit`, `Standard`,
  `Committed`, `Business Applications`), and so is what Krateo accepts (`usage`, `OneTime`,
  `On-Demand`, contains-word values like `Tax (VAT)`);
- a value with none of the allowed words is refused, naming the field;
- every missing required field is named at once;
- quantities: Kubernetes quantity strings, integers and decimals; text, booleans and NaN refused;
- times: RFC 3339 text and YAML timestamps; anything else refused; an explicit null is dropped;
- the CRD agrees: quantities int-or-string with Krateo's pattern, word fields with any-case patterns
  that match exactly what the model accepts for the sample values;
- the focus ingest row: FOCUS columns typed for the cost table, text with `,` `"` and newlines kept
  exactly, tags as an object (keys without '.', first wins), bookkeeping columns;
- Notebook: type inline|api in any case, stored lower-case; each type needs its source.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from functions.codecs import focusconfig_json
from functions.models import crdgen
from functions.models.focus import FOCUS_FIELDS, REQUIRED, WORDS, FocusConfig
from functions.models.notebooks import Notebook
from functions.models.registry import all_kinds
from functions.stages.focus_ingest import row
from functions.storage import tables


def focus(**fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "billedCost": "10", "billingCurrency": "USD", "billingPeriodStart": "2024-01-01T00:00:00Z",
        "billingPeriodEnd": "2024-02-01T00:00:00Z", "chargePeriodStart": "2024-01-01T00:00:00Z",
        "chargePeriodEnd": "2024-01-02T00:00:00Z", "chargeCategory": "Usage", "chargeDescription": "d",
        "consumedQuantity": "1", "consumedUnit": "Hour", "invoiceIssuerName": "i", "serviceCategory": "Compute",
    }
    spec.update(fields)
    return {"apiVersion": "finops.krateo.io/v1", "kind": "FocusConfig",
            "metadata": {"name": "f", "namespace": "n", "uid": "u-1", "generation": 3},
            "spec": {"focusSpec": {k: v for k, v in spec.items()}}}


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        FocusConfig.model_validate(doc)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_fields_are_krateos_names_in_order() -> None:
    assert FOCUS_FIELDS == focusconfig_json.FOCUS_FIELDS
    assert tuple(col for _, col, _ in FOCUS_FIELDS) == tables.FOCUS_COLUMNS[:50]  # the catalogue's other columns follow
    schema = FocusConfig.model_json_schema(by_alias=True)["$defs"]["FocusSpec"]
    assert list(schema["properties"]) == [name for name, _, _ in FOCUS_FIELDS]
    assert set(schema["required"]) == REQUIRED and len(REQUIRED) == 12
    assert FocusConfig.model_validate(focus(commitmentDiscoutId="cd-1")).focus_values()["commitmentDiscoutId"] == "cd-1"
    assert "spec.focusSpec.commitmentDiscountId" in errors_of(focus(commitmentDiscountId="cd-1"))


@pytest.mark.parametrize(("field", "value"), [
    ("capacityReservationStatus", "Used"), ("commitmentDiscountStatus", "Used"),
    ("commitmentDiscountCategory", "Spend"), ("chargeCategory", "Credit"), ("pricingCategory", "Standard"),
    ("pricingCategory", "Committed"), ("serviceCategory", "Business Applications"),
    ("serviceCategory", "AI and Machine Learning"), ("chargeCategory", "usage"), ("chargeFrequency", "OneTime"),
    ("chargeFrequency", "Usage-Based"), ("pricingCategory", "On-Demand"), ("chargeCategory", "Tax (VAT)"),
    ("chargeClass", "Correction"), ("capacityReservationStatus", ""),
], ids=lambda v: str(v) or "empty")
def test_focus_and_krateo_values_are_accepted(field: str, value: str) -> None:
    assert FocusConfig.model_validate(focus(**{field: value})).focus_values()[field] == value


@pytest.mark.parametrize(("field", "value"), [
    ("chargeCategory", "Refund"), ("capacityReservationStatus", "Reserved"), ("serviceCategory", "Cooking"),
    ("billingCurrency", "usd"), ("billingCurrency", "EURO"), ("billingCurrency", ""),
], ids=lambda v: str(v) or "empty")
def test_values_without_an_allowed_word_are_refused(field: str, value: str) -> None:
    assert f"spec.focusSpec.{field}" in errors_of(focus(**{field: value}))


def test_every_missing_required_field_is_named() -> None:
    doc = focus()
    doc["spec"]["focusSpec"] = {"billingCurrency": "EUR"}
    missing = {loc.rsplit(".", 1)[-1] for loc in errors_of(doc)}
    assert missing == REQUIRED - {"billingCurrency"}


@pytest.mark.parametrize("value", ["12.5", "-3", "1.5k", "100m", "2Ki", "1e3", 12, 12.5, 0], ids=str)
def test_quantities_accepted(value: Any) -> None:
    FocusConfig.model_validate(focus(billedCost=value, contractedCost=value))


@pytest.mark.parametrize("value", ["12 euros", "", "1,5", True, math.nan, math.inf], ids=str)
def test_bad_quantities_refused(value: Any) -> None:
    assert "spec.focusSpec.billedCost" in errors_of(focus(billedCost=value))


def test_times_and_nulls() -> None:
    parsed = FocusConfig.model_validate(focus(billingPeriodStart=datetime(2024, 1, 1, tzinfo=UTC), listCost=None))
    assert parsed.focus_values()["billingPeriodStart"] == "2024-01-01T00:00:00Z"
    assert "listCost" not in parsed.focus_values()
    assert "spec.focusSpec.chargePeriodEnd" in errors_of(focus(chargePeriodEnd="yesterday"))


def test_the_crd_agrees_with_the_model() -> None:
    props = crdgen.crd_schema(all_kinds()["FocusConfig"])["properties"]["spec"]["properties"]["focusSpec"]["properties"]
    for name in ("billedCost", "consumedQuantity", "listUnitPrice"):
        assert props[name]["x-kubernetes-int-or-string"] is True and props[name]["pattern"].startswith("^(\\+|-)?")
    samples = ["Used", "used", "USED", "Spend", "spend", "Unused", "Credit", "Tax (VAT)", "Refund", "Reserved", ""]
    for name, words in WORDS.items():
        crd = re.compile(props[name]["pattern"])
        for value in [*samples, *words, *(w.upper() for w in words)]:
            try:
                FocusConfig.model_validate(focus(**{name: value}))
                model_ok = True
            except ValidationError:
                model_ok = False
            assert bool(crd.search(value)) == model_ok, (name, value)


def test_row_is_typed_and_keeps_text_exactly() -> None:
    tricky = 'a, "b"\nc'
    cfg = FocusConfig.model_validate(focus(
        chargeDescription=tricky, billedCost="1.5k", effectiveCost=2, resourceName='x,"y"',
        tags=[{"key": "team", "value": "a,b"}, {"key": "cost.center", "value": "c"}, {"key": "team", "value": "z"}],
        skuPriceDetails=[{"key": "unit", "value": "GB"}]))
    columns, values = row(cfg, "FocusConfig/u-1", now=datetime(2024, 3, 1, tzinfo=UTC))
    got = dict(zip(columns, values, strict=True))
    assert columns[:50] == [c.lower() for c in tables.FOCUS_COLUMNS[:50]]
    assert got["chargedescription"] == tricky and got["resourcename"] == 'x,"y"'
    assert got["billedcost"] == 1500.0 and got["effectivecost"] == 2.0 and got["listcost"] is None  # absent: NULL, not 0.0
    assert got["consumedquantity"] == "1"  # a STRING column, as in Krateo
    assert got["billingperiodstart"] == "2024-01-01T00:00:00Z"
    assert got["tags"] == {"team": "a,b", "costcenter": "c"}
    assert got["skupricedetails"] == "unit=GB"
    assert (got["finops_source"], got["finops_run"], got["finops_ingested_at"]) == (
        "FocusConfig/u-1", "generation-3", "2024-03-01T00:00:00Z")


@pytest.mark.parametrize("kind", ["inline", "INLINE", "Inline", "api", "API", "Api"])
def test_notebook_type_any_case(kind: str) -> None:
    spec: dict[str, Any] = {"type": kind, "inline": "print(1)"} if kind.lower() == "inline" else \
        {"type": kind, "api": {"path": "/nb.py", "endpointRef": {"name": "s", "namespace": "n"}}}
    nb = Notebook.model_validate({"kind": "Notebook", "metadata": {"name": "q"}, "spec": spec})
    assert nb.spec.type == kind.lower()


@pytest.mark.parametrize("spec", [{"type": "inline"}, {"type": "api", "inline": "x"}, {"type": "file", "inline": "x"}],
                         ids=["inline-without-code", "api-without-api", "unknown-type"])
def test_notebook_needs_its_source(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Notebook.model_validate({"kind": "Notebook", "metadata": {"name": "q"}, "spec": spec})


@pytest.mark.parametrize("value", ["NULL", "null", ""], ids=repr)
def test_the_focus_null_is_a_quantity_where_focus_allows_null(value: str) -> None:
    cfg = FocusConfig.model_validate(focus(consumedQuantity=value, pricingQuantity=value))
    got = dict(zip(*row(cfg, "FocusConfig/u-1"), strict=True))
    assert got["consumedquantity"] is None and got["pricingquantity"] is None
    assert "spec.focusSpec.billedCost" in errors_of(focus(billedCost=value))  # FOCUS: BilledCost is never null
    assert "spec.focusSpec.billingPeriodStart" in errors_of(focus(billingPeriodStart=value))  # nor a period
