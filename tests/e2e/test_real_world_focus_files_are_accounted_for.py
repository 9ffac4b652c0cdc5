"""Real-world FOCUS files land exactly, or their rows are rejected with a reason, and the user is told.

The two files under tests/data were written by hand to look like provider exports and the FOCUS
project's own files, not like our generator's output:
- `focus-1.0-realworld.csv`: FOCUS 1.0 columns, a UTF-8 BOM, CRLF line ends, literal `NULL`, `null`
  and empty cells in string, number, timestamp and Tags columns, a credit and an adjustment with
  null quantities and prices, a tax row with a quoted newline, exponent notation, x_ custom columns,
  a space between date and time, an offset zone, two currencies and two billing periods; plus three
  rows that are not FOCUS-conformant: `"$10,000.00 "` as BilledCost, `4/1/25` as BillingPeriodStart
  and a `NULL` BilledCost.
- `focus-1.3-realworld.csv`: FOCUS 1.3 columns (ServiceProviderName and HostProviderName instead of
  ProviderName/PublisherName, ChargeClass, CommitmentDiscountQuantity/Unit, CapacityReservationId/
  Status, SkuMeter, SkuPriceDetails JSON, InvoiceId, the PricingCurrency columns), a Correction
  credit with NULL quantities, a Purchase, minutes-only timestamps, x_ columns; plus a locale number
  `1.234,56` and a locale date `01.01.2025`.

Cases (one stack, through the real exporter, scraper, database handler and `finops` CLI):
- both files land side by side in ONE table: per currency and period, the stored rows and
  SUM(billedcost) equal the conformant source rows to the cent (Decimal sums of the CSV text);
  NULL cells are NULL in the database (quantities, prices, timestamps, Tags: never 0.0);
  x_ columns and 1.3 columns are columns;
- each rejected row is named (row number, column, value) in `finops run`'s output, which exits 3,
  and in the io.finops.upload.completed event (received, stored, rejected, first reasons);
  the CR keeps Ready=True and gets Degraded=True / RowsRejected with the counts and first reasons;
- `finops_rejects` holds every rejected row with source, run, row number, column, reason, value
  and the raw row; `finops rejects` lists them;
- the ledger says received = stored + rejected per (period, currency), for rows and BilledCost;
- `finops validate KIND/NS/NAME` shows the run's FOCUS conformance findings (exit 1 on an error);
- the aicost-metrics exposition carries `finops_ingest_last_run_rows_rejected` per source;
- a second cycle changes nothing (rejects and ledger are replaced per run, never duplicated), and a
  corrected file clears the Degraded condition.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e_stack import E2EStack, database_docs, esc, period_of, secret
from loopback_http import Reply, Seen, serve

from functions import events

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent.parent / "data"
TABLE = "rw_costs"
REF10, REF13 = "ExporterScraperConfig/finops/rw-10", "ExporterScraperConfig/finops/rw-13"
NULLS = ("", "NULL", "null")
CENT = Decimal("0.01")


def source_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def conformant(row: dict[str, str]) -> bool:
    try:
        Decimal(row["BilledCost"])
    except ArithmeticError:
        return False
    return row["BillingPeriodStart"][:4].isdigit() and row["BillingPeriodStart"][4] == "-"


def expected_totals(rows: list[dict[str, str]]) -> dict[tuple[str, str], tuple[int, Decimal]]:
    out: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for r in rows:
        key = (r["BillingCurrency"], r["BillingPeriodStart"][:7])
        n, total = out.get(key, (0, Decimal(0)))
        out[key] = (n + 1, total + Decimal(r["BilledCost"]))
    return out


def stored_totals(stack: E2EStack) -> dict[tuple[str, str], tuple[int, Decimal]]:
    rows = stack.sql(f"SELECT billingcurrency, billingperiodstart, COUNT(*), SUM(billedcost) FROM {TABLE} "
                     "GROUP BY billingcurrency, billingperiodstart")
    out: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for cur, period, n, total in rows:
        key = (cur, period_of(period))
        m, t = out.get(key, (0, Decimal(0)))
        out[key] = (m + n, t + Decimal(repr(total)))
    return out


def same_to_the_cent(a: dict[Any, tuple[int, Decimal]], b: dict[Any, tuple[int, Decimal]]) -> bool:
    return a.keys() == b.keys() and all(a[k][0] == b[k][0] and abs(a[k][1] - b[k][1]) < CENT / 2 for k in a)


def conditions(stack: E2EStack, name: str) -> dict[str, dict[str, Any]]:
    out = stack.finops("get", f"ExporterScraperConfig/finops/{name}", "-o", "json")
    assert out.rc == 0, out.text
    body = json.loads(out.out)
    return {c["type"]: c for c in body["status"]["conditions"]}


def test_real_world_focus_files_are_stored_exactly_or_rejected_with_their_reason(stack: E2EStack) -> None:
    files = {"/v10.csv": (DATA / "focus-1.0-realworld.csv").read_bytes(),
             "/v13.csv": (DATA / "focus-1.3-realworld.csv").read_bytes()}

    def route(seen: Seen) -> Reply:
        return Reply(200, files[seen.path.split("?")[0]], {"Content-Type": "text/csv"})

    rows10, rows13 = source_rows(DATA / "focus-1.0-realworld.csv"), source_rows(DATA / "focus-1.3-realworld.csv")
    with serve(route) as api:
        stack.apply(secret("rw-api", {"server-url": api.url}), *database_docs(),
                    esc("rw-10", "/v10.csv", "rw-api", TABLE), esc("rw-13", "/v13.csv", "rw-api", TABLE))
        run10 = stack.run(REF10)
        run13 = stack.run(REF13)

        # finops run: the count, the row, the column and the value of each rejected row; exit 3
        assert run10.rc == 3 and run13.rc == 3, run10.text + run13.text
        assert "REJECTED 3 of 10 rows" in run10.out, run10.out
        assert "row 6 billedcost: value '$10,000.00 '" in run10.out, run10.out
        assert "row 7 billingperiodstart: value '4/1/25'" in run10.out, run10.out
        assert "row 8 billedcost:" in run10.out and "required" in run10.out, run10.out
        assert "REJECTED 2 of 6 rows" in run13.out and "'1.234,56'" in run13.out and "'01.01.2025'" in run13.out, run13.out
        assert "finops rejects ExporterScraperConfig/finops/rw-10" in run10.out

        # both FOCUS versions side by side in one table, to the cent
        good = [r for r in rows10 + rows13 if conformant(r)]
        assert len(good) == 11
        assert same_to_the_cent(stored_totals(stack), expected_totals(good)), (stored_totals(stack), expected_totals(good))

        # NULL stays NULL; x_ and FOCUS 1.3 columns are columns
        credit = stack.sql(f"SELECT consumedquantity, pricingquantity, listcost, listunitprice, chargeperiodend, resourceid, "
                           f"tags, x_skudescription FROM {TABLE} WHERE chargecategory = 'Credit' AND finops_source = ?", [REF10])
        assert credit == [[None, None, None, None, None, None, {"team": "web", "env": "prod"}, "m5.large Linux"]]
        nulltags = stack.sql(f"SELECT tags, consumedquantity FROM {TABLE} WHERE resourceid = 'i-0def'")
        assert nulltags == [[None, None]]
        v13 = stack.sql(f"SELECT serviceprovidername, hostprovidername, chargeclass, commitmentdiscountquantity, "
                        f"skumeter, skupricedetails, x_servicecode, x_discounts, invoiceid FROM {TABLE} "
                        "WHERE finops_source = ? AND chargecategory = 'Credit'", [REF13])
        assert v13 == [["Microsoft", "Microsoft", "Correction", None, None, None, "VM", '[{"type": "promo"}]', "INV-2025-01"]]
        assert stack.sql(f"SELECT commitmentdiscountquantity FROM {TABLE} WHERE chargecategory = 'Purchase'") == [[720.0]]

        # the CR: Ready stays True, Degraded=True RowsRejected with counts and reasons
        conds = conditions(stack, "rw-10")
        assert conds["Ready"]["status"] == "True"
        assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "RowsRejected")
        assert conds["Degraded"]["message"].startswith("3 of 10 rows rejected") and "$10,000.00" in conds["Degraded"]["message"]

        # the rejects table: source, run, row, column, reason, value and the raw row
        rejects = stack.sql("SELECT finops_source, finops_run, row_number, column_name, value, reason, raw, target_table "
                            "FROM finops_rejects WHERE finops_run IN (SELECT finops_run FROM finops_ledger WHERE finops_part = -1 "
                            "AND recorded_at = (SELECT MAX(recorded_at) FROM finops_ledger l WHERE l.finops_source = finops_ledger.finops_source "
                            "AND l.finops_part = -1)) ORDER BY finops_source, row_number")
        assert [(r[0], r[2], r[3], r[4]) for r in rejects] == [
            (REF10, 6, "billedcost", "$10,000.00 "), (REF10, 7, "billingperiodstart", "4/1/25"), (REF10, 8, "billedcost", None),
            (REF13, 5, "billedcost", "1.234,56"), (REF13, 6, "billingperiodstart", "01.01.2025")]
        assert all(r[1] and r[5] and r[7] == TABLE for r in rejects)
        raw = json.loads(rejects[0][6])
        assert raw["ResourceId"] == "i-money" and raw["BilledCost"] == "$10,000.00 " and raw["x_BillingProfileId"] == "bp-1"

        # finops rejects lists them, with the run's ledger
        listed = stack.finops("rejects", REF10)
        assert listed.rc == 0 and "$10,000.00" in listed.out and "4/1/25" in listed.out, listed.text
        listed_json = json.loads(stack.finops("rejects", REF10, "--json").out)
        assert len(listed_json["rejects"]) == 3 and listed_json["table"] == TABLE

        # the ledger: received = stored + rejected, rows and BilledCost, per (period, currency)
        for ledger in (listed_json["ledger"], json.loads(stack.finops("rejects", REF13, "--json").out)["ledger"]):
            assert sum(r["rows_received"] for r in ledger) in (10, 6)
            for r in ledger:
                assert r["rows_received"] == r["rows_stored"] + r["rows_rejected"], r
                assert abs(Decimal(repr(r["billedcost_received"])) - Decimal(repr(r["billedcost_stored"] or 0.0))
                           - Decimal(repr(r["billedcost_rejected"]))) < CENT / 2, r

        # FOCUS conformance findings of each snapshot, stored beside the ledger: report-only
        validated = stack.finops("validate", REF13)
        assert validated.rc == 1 and "BilledCost" in validated.out and "BillingPeriodStart" in validated.out, validated.text
        found = json.loads(stack.finops("validate", REF13, "--json").out)
        assert any(f["column_name"] == "BilledCost" and f["row_count"] == 1 for f in found["findings"]), found

        # the event: io.finops.upload.completed carries received/stored/rejected and the first reasons
        reply = stack.post_event("scraper", events.new(events.EXPORT_COMPLETED, "/test", {"config": REF13}, subject=REF13))
        done = events.from_http(dict(reply.headers), reply.content)
        assert done.type == events.UPLOAD_COMPLETED
        assert (done.data["received"], done.data["stored"], done.data["rejected"]) == (6, 4, 2), done.data
        assert [r["value"] for r in done.data["reasons"]] == ["1.234,56", "01.01.2025"]
        assert done.data["findings"]["error"] >= 2

        # the metric a Prometheus alerts on
        metrics = httpx.get(stack.url("aicost-metrics") + "/metrics", headers=stack.auth(), timeout=30).text
        assert f'finops_ingest_last_run_rows_rejected{{source="{REF10}",table="{TABLE}"}} 3.0' in metrics, metrics
        assert f'finops_ingest_last_run_rows_stored{{source="{REF13}",table="{TABLE}"}} 4.0' in metrics, metrics

        # a re-run duplicates nothing; a corrected file clears Degraded
        again = stack.run(REF10)
        assert again.rc == 3, again.text
        assert same_to_the_cent(stored_totals(stack), expected_totals(good))
        runs = stack.sql("SELECT COUNT(DISTINCT finops_run) FROM finops_ledger WHERE finops_source = ? AND finops_part = -1", [REF10])
        assert runs[0][0] >= 2  # apply's own cycle, `finops run` and this one: each run keeps its rejects once
        assert stack.sql("SELECT COUNT(*) FROM finops_rejects WHERE finops_source = ?", [REF10])[0][0] == 3 * runs[0][0]
        last = json.loads(stack.finops("rejects", REF10, "--json").out)
        assert len(last["rejects"]) == 3 and sum(r["rows_received"] for r in last["ledger"]) == 10

        fixed = [r for r in rows10 if conformant(r)]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows10[0]))
        writer.writeheader()
        writer.writerows(fixed)
        files["/v10.csv"] = out.getvalue().encode()
        clean = stack.run(REF10)
        assert clean.rc == 0 and "REJECTED" not in clean.out, clean.text
        conds = conditions(stack, "rw-10")
        assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("False", "AllRowsStored")
        assert yaml.safe_load(stack.finops("get", REF10, "-o", "yaml").out)["status"]["lastUpload"]["rejected"] == 0
