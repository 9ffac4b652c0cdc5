"""The demo's FOCUS 1.0 generator produces realistic, deterministic, exactly-summable rows.

Cases: every FOCUS 1.0 column plus x_ columns, on every row; same seed -> same rows, other seed ->
other rows; two billing periods; three providers with their services; USD mostly, EUR from one
billing account only; Credit rows (negative) and Tax rows share Krateo's 7-column key with a usage
row; commitment-covered usage has EffectiveCost != BilledCost; Purchase and Adjustment/Correction
rows exist; Tags are JSON objects (some `{}`) whose values survive Krateo's Tags rewrite; amounts
have at most 4 decimals and sum exactly with Decimal; the fast CSV writer equals csv.DictWriter
byte for byte; restate scales one period exactly and marks it Correction.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest

from functions.demo.focus_rows import (
    COST_COLUMNS,
    FOCUS_1_0_COLUMNS,
    FOCUS_COLUMNS,
    KRATEO_KEY,
    focus_csv_text,
    focus_rows,
    restate,
    write_focus_csv,
)

ROWS = list(focus_rows(3000, seed=7))
AMOUNT = re.compile(r"^-?\d+\.\d{1,4}$")
AMOUNT_COLUMNS = (*COST_COLUMNS, "ListUnitPrice", "ContractedUnitPrice", "PricingQuantity", "ConsumedQuantity")


def test_every_focus_1_0_column_and_x_columns_on_every_row() -> None:
    assert len(FOCUS_1_0_COLUMNS) == 43 and {"ResourceName", "SkuPriceId", "Tags"} <= set(FOCUS_1_0_COLUMNS)
    assert [c for c in FOCUS_COLUMNS if c.startswith("x_")] and FOCUS_COLUMNS[:43] == FOCUS_1_0_COLUMNS
    assert all(tuple(r) == FOCUS_COLUMNS for r in ROWS)


@pytest.mark.parametrize("seed", [0, 1, 42], ids=["seed0", "seed1", "seed42"])
def test_same_seed_same_rows(seed: int) -> None:
    assert list(focus_rows(500, seed=seed)) == list(focus_rows(500, seed=seed))
    assert list(focus_rows(500, seed=seed)) != list(focus_rows(500, seed=seed + 100))


def test_two_billing_periods_and_hourly_charge_periods_inside_them() -> None:
    periods = Counter(r["BillingPeriodStart"] for r in ROWS)
    assert set(periods) == {"2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"}
    usage = [r for r in ROWS if r["ChargeCategory"] == "Usage"]
    assert all(r["BillingPeriodStart"] <= r["ChargePeriodStart"] < r["ChargePeriodEnd"] <= r["BillingPeriodEnd"]
               for r in usage)


def test_providers_services_and_currencies() -> None:
    services = defaultdict(set)
    for r in ROWS:
        services[r["ProviderName"]].add(r["ServiceName"])
    assert {"Amazon Elastic Compute Cloud", "Amazon Simple Storage Service"} <= services["AWS"]
    assert {"Virtual Machines", "Storage", "SQL Database"} <= services["Microsoft"]
    assert {"Compute Engine", "Cloud Storage", "BigQuery"} <= services["Google Cloud"]
    currencies = Counter(r["BillingCurrency"] for r in ROWS)
    assert currencies["USD"] > currencies["EUR"] > 0
    assert {r["BillingAccountId"] for r in ROWS if r["BillingCurrency"] == "EUR"} == {"7723419"}


@pytest.mark.parametrize("category", ["Credit", "Tax"], ids=["credit", "tax"])
def test_credit_and_tax_rows_share_krateos_key_with_a_usage_row(category: str) -> None:
    usage_keys = {tuple(r[k] for k in KRATEO_KEY) for r in ROWS if r["ChargeCategory"] == "Usage"}
    rows = [r for r in ROWS if r["ChargeCategory"] == category]
    assert rows and all(tuple(r[k] for k in KRATEO_KEY) in usage_keys for r in rows)
    if category == "Credit":
        assert all(Decimal(r["BilledCost"]) < 0 for r in rows)
    else:
        assert all(Decimal(r["BilledCost"]) > 0 for r in rows)


def test_commitments_purchases_and_corrections() -> None:
    committed = [r for r in ROWS if r["PricingCategory"] == "Committed"]
    assert committed and all(r["BilledCost"] != r["EffectiveCost"] and r["CommitmentDiscountId"] for r in committed)
    purchases = [r for r in ROWS if r["ChargeCategory"] == "Purchase"]
    assert purchases and all(Decimal(r["EffectiveCost"]) == 0 < Decimal(r["BilledCost"]) for r in purchases)
    corrections = [r for r in ROWS if r["ChargeClass"] == "Correction"]
    assert corrections and all(r["ChargeCategory"] == "Adjustment" and r["ChargePeriodStart"] < r["BillingPeriodStart"]
                               for r in corrections)


def test_tags_are_json_objects_some_untagged_and_safe_for_krateos_rewrite() -> None:
    tags = [json.loads(r["Tags"]) for r in ROWS]
    assert all(isinstance(t, dict) for t in tags)
    assert any(t == {} for t in tags) and any("team" in t for t in tags) and any(t and "team" not in t for t in tags)
    assert all(not re.search(r"[:;,=]", f"{k}{v}") for t in tags for k, v in t.items())


def test_amounts_have_at_most_four_decimals_and_sum_exactly() -> None:
    for r in ROWS:
        for col in AMOUNT_COLUMNS:
            assert r[col] == "" or AMOUNT.match(r[col]), (col, r[col])
    exact = sum((Decimal(r["BilledCost"]) for r in ROWS), Decimal(0))
    assert exact == exact.quantize(Decimal("0.0001"))
    assert abs(Decimal(repr(sum(float(r["BilledCost"]) for r in ROWS))) - exact) < Decimal("0.005")


def test_non_x_cells_identify_each_row() -> None:
    """Krateo's exporter keys a series by its non-x_ cells: no two rows may collapse."""
    ids = Counter(tuple(v for k, v in r.items() if not k.startswith("x_")) for r in ROWS)
    assert max(ids.values()) == 1


def test_fast_writer_equals_csv_module() -> None:
    expected = io.StringIO()
    writer = csv.DictWriter(expected, FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(focus_rows(400, seed=3))
    assert focus_csv_text(400, seed=3) == expected.getvalue()
    out = io.StringIO()
    assert write_focus_csv(out, 400, seed=3) == 400
    assert '"' in out.getvalue()  # quoted cells with commas and JSON are part of the test


def test_restate_scales_one_period_exactly() -> None:
    restated = list(restate(ROWS, "2026-09", "1.1"))
    assert len(restated) == len(ROWS)
    for old, new in zip(ROWS, restated, strict=True):
        if old["BillingPeriodStart"].startswith("2026-09"):
            assert new["ChargeClass"] == "Correction"
            for col in COST_COLUMNS:
                assert Decimal(new[col]) == (Decimal(old[col]) * Decimal("1.1")).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        else:
            assert new == old
