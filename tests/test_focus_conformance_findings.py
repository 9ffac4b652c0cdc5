"""FOCUS conformance findings: what a file gets wrong, reported, never blocking.

Cases (files written here and read through the real reader, functions.codecs.sources.read_payload):
- a clean FOCUS 1.0 file (the repository's sample and a hand-written one) and a clean 1.3 file have
  no findings; provider-shaped 1.2/1.3 files from focus-data-toolkit (AWS, Azure, GCP) have no errors;
- a bad ChargeCategory value: one error with the count, the first five row numbers and values, and a
  hint when the value is a case slip; `On-Demand` is named as renamed to `Standard`;
- a null mandatory column (empty, `NULL`, `null`, ` NULL `) is one not-null error; null literals in
  nullable columns and in allowed-value columns are no finding;
- a missing mandatory column is an error naming the column; a missing recommended one a warning;
- ChargeClass: `Correction` and null pass, anything else (`correction`, `Refund`) is an error;
- a 1.0 file checked as 1.3 lacks ServiceProviderName (the message names ProviderName) and
  HostProviderName; the same file detected is 1.0 and clean; AmortizedCost is named as EffectiveCost's old name;
- numbers: plain and exponent notation pass, `$10` / `1,000.50` / `1e999` are errors; period bounds
  that are not date-times are errors; a start that is not before its end is an error;
- lower-case column names match; `__row__` gives the row numbers; detection follows the newest
  column present; an unknown version is refused; a Finding is frozen.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from functions.codecs.focus_conformance import Finding, check, has_errors
from functions.codecs.sources import read_payload
from functions.models import focus_columns as fc

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_1_0 = ROOT / "tests" / "data" / "focus-1.0-sample.csv"

_VALUES: dict[str, str] = {
    "BilledCost": "12.5", "EffectiveCost": "11.25", "ListCost": "14", "ContractedCost": "12.5",
    "BillingAccountId": "acct-1", "BillingAccountName": "Main", "BillingAccountType": "Billing Profile",
    "BillingCurrency": "USD", "BillingPeriodStart": "2025-04-01T00:00:00Z", "BillingPeriodEnd": "2025-05-01T00:00:00Z",
    "ChargePeriodStart": "2025-04-02T00:00:00Z", "ChargePeriodEnd": "2025-04-03T00:00:00Z",
    "ChargeCategory": "Usage", "ChargeClass": "", "ChargeDescription": "1 hour of a VM", "ChargeFrequency": "Usage-Based",
    "ConsumedQuantity": "1", "ConsumedUnit": "Hours", "ContractedUnitPrice": "12.5", "InvoiceIssuerName": "Cloud Inc",
    "ListUnitPrice": "14", "PricingCategory": "Standard", "PricingQuantity": "1", "PricingUnit": "Hours",
    "ProviderName": "Cloud", "PublisherName": "Cloud", "ServiceProviderName": "Cloud", "HostProviderName": "Cloud",
    "RegionId": "eu-1", "RegionName": "Europe 1", "ResourceId": "vm-1", "ResourceName": "vm one", "ResourceType": "VM",
    "ServiceCategory": "Compute", "ServiceName": "VMs", "ServiceSubcategory": "Virtual Machines", "SkuId": "sku-1",
    "SkuPriceId": "price-1", "SubAccountId": "sub-1", "SubAccountName": "prod", "Tags": '{"team": "a"}',
    "InvoiceId": "inv-1", "PricingCurrency": "USD", "PricingCurrencyEffectiveCost": "11.25",
    "CommitmentDiscountStatus": "NULL", "CommitmentDiscountCategory": "null", "CapacityReservationStatus": "",
}


def row(version: fc.FocusVersion, **changes: str) -> dict[str, str]:
    """One clean row of `version`'s columns; `changes` override (a value of None drops the column)."""
    out = {c.name: _VALUES.get(c.name, "") for c in fc.columns_in(version)}
    out.update(changes)
    return out


def write(path: Path, rows: list[dict[str, str]], drop: tuple[str, ...] = ()) -> Path:
    names = [n for n in rows[0] if n not in drop]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read(path: Path) -> pa.Table:
    with path.open("rb") as body:
        return pa.Table.from_batches(list(read_payload(body, "text/csv", str(path), "generic")))


def findings(path: Path, version: str | None = None) -> dict[str, Finding]:
    found = check(read(path), version)
    assert len({f.rule for f in found}) == len(found)
    return {f.rule: f for f in found}


def test_clean_files_have_no_findings(tmp_path: Path) -> None:
    assert findings(SAMPLE_1_0) == {}
    assert findings(write(tmp_path / "one-0.csv", [row("1.0")] * 3)) == {}
    assert findings(write(tmp_path / "one-3.csv", [row("1.3")] * 3)) == {}
    assert check(read(SAMPLE_1_0), "1.0") == [] and check(read(tmp_path / "one-3.csv"), "1.3") == []


def test_a_bad_charge_category_is_counted_with_its_rows(tmp_path: Path) -> None:
    rows = [row("1.0", ChargeCategory=v) for v in
            ("Usage", "Refund", "usage", "Tax", "Refund", "Discount", "Refund", "Credit", "Refund")]
    f = findings(write(tmp_path / "bad.csv", rows))["FOCUS-ChargeCategory-allowed-values"]
    assert (f.severity, f.column, f.count, f.version) == ("error", "ChargeCategory", 6, "1.0")
    assert f.examples == ((2, "Refund"), (3, "usage"), (5, "Refund"), (6, "Discount"), (7, "Refund"))
    assert "Usage, Purchase, Tax, Credit, Adjustment" in f.message and "case-sensitive" in f.message
    renamed = findings(write(tmp_path / "od.csv", [row("1.0", PricingCategory="On-Demand")]))
    assert "'On-Demand' is now 'Standard'" in renamed["FOCUS-PricingCategory-allowed-values"].message


def test_a_null_mandatory_column_is_one_error(tmp_path: Path) -> None:
    rows = [row("1.0", BilledCost=v) for v in ("1", "", "NULL", "null", " NULL ", "2")]
    got = findings(write(tmp_path / "nulls.csv", rows))
    assert list(got) == ["FOCUS-BilledCost-not-null"]
    assert got["FOCUS-BilledCost-not-null"].count == 4
    assert got["FOCUS-BilledCost-not-null"].examples == ((2, ""), (3, "NULL"), (4, "null"), (5, " NULL "))


def test_literal_null_cells_are_nulls(tmp_path: Path) -> None:
    rows = [row("1.1", CommitmentDiscountStatus=v, ChargeClass=v, ResourceId=v, CommitmentDiscountQuantity=v,
                ChargeDescription="x") for v in ("NULL", "null", "", "Used")]
    rows[3].update(ChargeClass="Correction", ResourceId="vm-1", CommitmentDiscountQuantity="2")
    assert findings(write(tmp_path / "n.csv", rows)) == {}
    described = [row("1.0", ChargeDescription=v) for v in ("NULL", "text")]
    f = findings(write(tmp_path / "d.csv", described))["FOCUS-ChargeDescription-should-not-be-null"]
    assert (f.severity, f.count, f.examples) == ("warning", 1, ((1, "NULL"),))


def test_missing_columns(tmp_path: Path) -> None:
    got = findings(write(tmp_path / "m.csv", [row("1.2")] * 2, drop=("BilledCost", "InvoiceId", "Tags")))
    assert set(got) == {"FOCUS-BilledCost-present", "FOCUS-InvoiceId-recommended"}  # Tags is conditional
    missing = got["FOCUS-BilledCost-present"]
    assert (missing.severity, missing.count, missing.examples) == ("error", 2, ())
    assert got["FOCUS-InvoiceId-recommended"].severity == "warning"
    assert not has_errors([got["FOCUS-InvoiceId-recommended"]]) and has_errors(list(got.values()))


def test_charge_class_values(tmp_path: Path) -> None:
    rows = [row("1.0", ChargeClass=v) for v in ("Correction", "", "NULL", "correction", "Refund")]
    f = findings(write(tmp_path / "cc.csv", rows))["FOCUS-ChargeClass-allowed-values"]
    assert (f.count, f.examples) == (2, ((4, "correction"), (5, "Refund")))
    assert "must be one of Correction" in f.message


def test_a_1_0_file_checked_as_1_3(tmp_path: Path) -> None:
    got = findings(SAMPLE_1_0, "1.3")
    assert {r for r, f in got.items() if f.severity == "error"} == {
        "FOCUS-ServiceProviderName-present", "FOCUS-HostProviderName-present"}
    assert "it has ProviderName, which FOCUS 1.3 deprecates in favour of ServiceProviderName" in \
        got["FOCUS-ServiceProviderName-present"].message
    assert "new in FOCUS 1.3" in got["FOCUS-HostProviderName-present"].message
    assert all(f.version == "1.3" for f in got.values())
    assert findings(SAMPLE_1_0) == {}
    old = row("1.0")
    old["AmortizedCost"] = old.pop("EffectiveCost")
    msg = findings(write(tmp_path / "old.csv", [old]))["FOCUS-EffectiveCost-present"].message
    assert "it has AmortizedCost, which FOCUS 1.0-preview renamed to EffectiveCost" in msg


def test_numbers_dates_and_periods(tmp_path: Path) -> None:
    rows = [row("1.0", ListCost=v) for v in ("1e3", "-0.5", "+.25", "2.5E-3", "$10", "1,000.50", "1e999", "12 EUR")]
    f = findings(write(tmp_path / "num.csv", rows))["FOCUS-ListCost-numeric"]
    assert (f.count, [v for _, v in f.examples]) == (4, ["$10", "1,000.50", "1e999", "12 EUR"])
    periods = [row("1.0"), row("1.0", ChargePeriodStart="2025-04-03T00:00:00Z"),
               row("1.0", ChargePeriodEnd="2025-04-01T00:00:00Z"), row("1.0", ChargePeriodStart="4/2/25"),
               row("1.0", BillingPeriodEnd="2025-04-01")]
    got = findings(write(tmp_path / "p.csv", periods))
    order = got["FOCUS-ChargePeriod-start-before-end"]
    assert (order.count, order.examples) == (2, (
        (2, "2025-04-03T00:00:00Z >= 2025-04-03T00:00:00Z"), (3, "2025-04-02T00:00:00Z >= 2025-04-01T00:00:00Z")))
    assert got["FOCUS-ChargePeriodStart-datetime"].examples == ((4, "4/2/25"),)
    assert got["FOCUS-BillingPeriod-start-before-end"].examples == ((5, "2025-04-01T00:00:00Z >= 2025-04-01"),)
    assert set(got) == {"FOCUS-ChargePeriod-start-before-end", "FOCUS-ChargePeriodStart-datetime",
                        "FOCUS-BillingPeriod-start-before-end"}


def test_lower_case_names_row_numbers_and_arrow_nulls() -> None:
    clean = row("1.0")
    cols = {k.lower(): [clean[k]] * 3 for k in clean}
    cols["chargecategory"] = ["Usage", "Bogus", None]
    cols["billedcost"] = ["1", None, "x"]
    table = pa.table({**cols, "__row__": pa.array([10, 20, 30], pa.int64())})
    got = {f.rule: f for f in check(table)}
    assert got["FOCUS-ChargeCategory-allowed-values"].examples == ((20, "Bogus"),)
    assert got["FOCUS-ChargeCategory-not-null"].examples == ((30, None),)
    assert got["FOCUS-BilledCost-not-null"].examples == ((20, None),)
    assert got["FOCUS-BilledCost-numeric"].examples == ((30, "x"),)


def test_version_detection_and_unknown_versions() -> None:
    base = [c.name for c in fc.columns_in("1.0")]
    assert fc.detect_version(base) == "1.0"
    assert fc.detect_version([*base, "skumeter"]) == "1.1"
    assert fc.detect_version([*base, "SkuMeter", "InvoiceId"]) == "1.2"
    assert fc.detect_version(["ServiceProviderName"]) == "1.3"
    assert [len(fc.columns_in(v)) for v in fc.VERSIONS] == [43, 50, 57, 65]
    with pytest.raises(ValueError, match="unknown FOCUS version '2.0'"):
        check(pa.table({"BilledCost": ["1"]}), "2.0")
    finding = check(pa.table({"BilledCost": ["1"]}), "1.0")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.count = 0  # type: ignore[misc]
    assert finding.to_dict()["examples"] == [] and finding.to_dict()["rule"].startswith("FOCUS-")


@pytest.mark.skipif(importlib.util.find_spec("focus_data_toolkit") is None, reason="focus-data-toolkit (dev extra) missing")
@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_focus_toolkit_files_have_no_errors(tmp_path: Path, provider: str, version: str) -> None:
    subprocess.run([sys.executable, "-m", "focus_data_toolkit", "generate", "--provider", provider,
                    "--focus-version", version, "--rows", "2000", "--seed", "11", "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    (path,) = tmp_path.glob("*cost_and_usage*.csv")
    table = read(path)
    assert table.num_rows == 2000 and fc.detect_version(table.column_names) == version
    got = check(table)
    assert [f for f in got if f.severity == "error"] == []
    assert got == [], [f.to_dict() for f in got]


def test_csv_text_round_trip_keeps_cells() -> None:
    """The reader hands cells over as written: the checker sees `NULL`, not an Arrow null."""
    body = io.BytesIO(b"BilledCost,ChargeCategory\nNULL,Usage\n")
    table = pa.Table.from_batches(list(read_payload(body, "text/csv", "x.csv", "cost")))
    assert table.column("BilledCost").to_pylist() == ["NULL"]
