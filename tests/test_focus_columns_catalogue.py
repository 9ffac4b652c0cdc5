"""The FOCUS column catalogue is the one source of the cost table's FOCUS columns and of docs/focus-columns.md.

Cases:
- docs/focus-columns.md equals what the generator writes (drift check); `--check` exits 0 on it and
  1 naming the file after a hand edit;
- 43 / 50 / 57 / 65 columns in FOCUS 1.0 / 1.1 / 1.2 / 1.3: 1.0 equals the demo generator's FOCUS
  1.0 list, 1.2 and 1.3 equal focus-data-toolkit's (when installed); every column is in every later
  version; ProviderName and PublisherName are deprecated in 1.3, ServiceProviderName replaces ProviderName;
- allowed values per version (CapacityReservationStatus only from 1.1);
- the cost table keeps Krateo's 50 columns first and every type it had, and gains the other
  catalogue columns typed from the catalogue (SkuPriceDetails and the other JSON columns but Tags as STRING).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from functions.demo.focus_rows import FOCUS_1_0_COLUMNS
from functions.models import focus_columns as fc
from functions.storage import focus_columns_doc, tables

ROOT = Path(__file__).resolve().parent.parent

_BEFORE_DOUBLES = {"billedcost", "commitmentdiscountquantity", "contractedcost", "contractedunitcost", "effectivecost",
                   "listcost", "listunitprice", "pricingquantity"}
_BEFORE_TIMESTAMPS = {"billingperiodend", "billingperiodstart", "chargeperiodend", "chargeperiodstart"}


def test_the_document_is_generated() -> None:
    assert (ROOT / "docs" / focus_columns_doc.FILE).read_text(encoding="utf-8") == focus_columns_doc.render(), \
        "regenerate: python -m functions.storage.focus_columns_doc docs"


def test_check_names_a_stale_document(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    cmd = [sys.executable, "-m", "functions.storage.focus_columns_doc", "--check", str(tmp_path / "docs")]
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).returncode == 0
    doc = tmp_path / "docs" / focus_columns_doc.FILE
    doc.write_text(doc.read_text() + "edited by hand\n")
    stale = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert stale.returncode == 1 and focus_columns_doc.FILE in stale.stderr


def test_columns_per_version() -> None:
    assert [len(fc.columns_in(v)) for v in fc.VERSIONS] == [43, 50, 57, 65]
    assert {c.name for c in fc.columns_in("1.0")} == set(FOCUS_1_0_COLUMNS)
    for older, newer in zip(fc.VERSIONS, fc.VERSIONS[1:], strict=False):
        assert {c.name for c in fc.columns_in(older)} < {c.name for c in fc.columns_in(newer)}
    assert {c.name for c in fc.new_in("1.3")} == {
        "ServiceProviderName", "HostProviderName", "ContractApplied", "AllocatedMethodId", "AllocatedMethodDetails",
        "AllocatedResourceId", "AllocatedResourceName", "AllocatedTags"}
    assert (fc.BY_NAME["ProviderName"].deprecated, fc.BY_NAME["ProviderName"].replaced_by) == ("1.3", "ServiceProviderName")
    assert fc.BY_NAME["PublisherName"].deprecated == "1.3"
    assert {c.name for c in fc.mandatory_in("1.3")} - {c.name for c in fc.mandatory_in("1.2")} == {
        "ServiceProviderName", "HostProviderName"}
    assert [c.name for c in fc.CATALOGUE] == sorted(c.name for c in fc.CATALOGUE)


@pytest.mark.skipif(importlib.util.find_spec("focus_data_toolkit") is None, reason="focus-data-toolkit (dev extra) missing")
def test_the_toolkit_agrees_on_1_2_and_1_3() -> None:
    from focus_data_toolkit.generators.versions import v1_2, v1_3

    assert {c.name for c in fc.columns_in("1.2")} == set(v1_2.COLUMNS)
    assert {c.name for c in fc.columns_in("1.3")} == set(v1_3.COLUMNS)


def test_allowed_values_per_version() -> None:
    assert fc.BY_NAME["ChargeCategory"].allowed_in("1.0") == ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
    assert fc.BY_NAME["ChargeClass"].allowed_in("1.3") == ("Correction",)
    assert fc.BY_NAME["PricingCategory"].allowed_in("1.2") == ("Standard", "Dynamic", "Committed", "Other")
    assert fc.BY_NAME["CapacityReservationStatus"].allowed_in("1.0") == ()
    assert fc.BY_NAME["CapacityReservationStatus"].allowed_in("1.1") == ("Used", "Unused")
    with_values = {c.name for c in fc.CATALOGUE if c.allowed}
    assert with_values == {"CapacityReservationStatus", "ChargeCategory", "ChargeClass", "ChargeFrequency",
                           "CommitmentDiscountCategory", "CommitmentDiscountStatus", "PricingCategory", "ServiceCategory"}


def test_the_cost_table_follows_the_catalogue() -> None:
    cols = tables.cost_columns()
    assert tables.FOCUS_COLUMNS[:50] == tables.KRATEO_COLUMNS and "ContractedUnitCost" in tables.KRATEO_COLUMNS
    assert _BEFORE_DOUBLES <= tables.COST_DOUBLES and _BEFORE_TIMESTAMPS == tables.COST_TIMESTAMPS
    assert {"tags"} == tables.COST_OBJECTS and cols["consumedquantity"] == tables.STRING
    for c in fc.CATALOGUE:
        assert cols[c.name.lower()] == tables.KRATEO_TYPES.get(c.name.lower(), tables.stored_type(c))
    assert cols["skupricedetails"] == cols["contractapplied"] == cols["allocatedtags"] == tables.STRING
    assert cols["contractedunitprice"] == cols["pricingcurrencyeffectivecost"] == tables.DOUBLE
    assert len(tables.FOCUS_COLUMNS) == 66 and len(set(tables.FOCUS_COLUMNS)) == 66
