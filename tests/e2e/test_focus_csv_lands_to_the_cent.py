"""A FOCUS CSV served over HTTP lands in the cost table to the cent, and stays exact across cycles.

Cases (one stack, one story, through the real functions and `finops` CLI):
- apply the ExporterScraperConfig + endpoint Secret + DatabaseConfig, `finops run` it: the table has
  the source's row count, and BilledCost per provider, per currency, per billing period and per
  charge category (credit, tax and adjustment rows, many sharing Krateo's key) equal the CSV's,
  read with the csv module and summed with Decimal, to the cent;
- three more cycles: row count and every total identical (re-runs never duplicate);
- the API publishes a restated period (focus_rows.restate) with some rows of it gone: one more cycle
  makes the table equal to the new source; the old figures of that period are gone, the other
  period is unchanged, the vanished rows vanished.
"""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
from e2e_stack import GROUPS, E2EStack, csv_totals, database_docs, db_totals, esc, period_of, secret

from functions.demo.demo_apis import DemoCostApi
from functions.demo.focus_rows import KRATEO_KEY, restate

pytestmark = pytest.mark.slow
REF = "ExporterScraperConfig/finops/focus-e2e"
TABLE = "focus_e2e"


def assert_equal_to_source(stack: E2EStack, api: DemoCostApi) -> None:
    for group in GROUPS:
        source, stored = csv_totals(api.csv_path, group), db_totals(stack, TABLE, group)
        assert stored.same_to_the_cent(source), f"per {group}: stored {stored} != source {source}"


def test_focus_csv_lands_to_the_cent_and_survives_reruns_and_restatements(stack: E2EStack, tmp_path) -> None:
    with DemoCostApi(1500, seed=11, data_dir=tmp_path / "api") as api:
        rows = list(csv.DictReader(api.csv_path.open(newline="", encoding="utf-8")))
        categories = {r["ChargeCategory"] for r in rows}
        assert {"Usage", "Credit", "Tax", "Adjustment"} <= categories, categories
        keys = [tuple(r[k] for k in KRATEO_KEY) for r in rows]
        assert len(set(keys)) < len(keys), "the source must hold rows sharing Krateo's key"

        stack.apply(secret("focus-e2e-api", {"server-url": api.url, "token": api.token}), *database_docs(),
                    esc("focus-e2e", "/focus/export.csv", "focus-e2e-api", TABLE, headers=["Accept: text/csv"]))
        first = stack.run(REF)
        assert first.rc == 0, first.text
        assert "io.finops.upload.completed" in first.out, first.out
        assert_equal_to_source(stack, api)
        assert stack.sql(f"SELECT count(*) FROM {TABLE} WHERE chargecategory IN ('Credit', 'Tax')")[0][0] == sum(
            1 for r in rows if r["ChargeCategory"] in ("Credit", "Tax"))

        for _ in range(3):
            again = stack.run(REF)
            assert again.rc == 0, again.text
        assert_equal_to_source(stack, api)

        periods = sorted({r["BillingPeriodStart"][:7] for r in rows})
        assert len(periods) == 2, periods
        restated, kept = periods
        before_kept = db_totals(stack, TABLE, "period").by[(kept,)]
        vanished = [r for r in rows if r["BillingPeriodStart"].startswith(restated)][::7]
        gone = {id(r) for r in vanished}
        api.publish(restate((r for r in rows if id(r) not in gone), restated, Decimal("1.0725")))

        last = stack.run(REF)
        assert last.rc == 0, last.text
        assert_equal_to_source(stack, api)
        byperiod_of = db_totals(stack, TABLE, "period").by
        assert byperiod_of[(kept,)] == before_kept
        assert byperiod_of[(restated,)][0] == sum(1 for r in rows if r["BillingPeriodStart"].startswith(restated)) - len(vanished)
        stored = stack.sql(f"SELECT billingperiodstart, chargeclass FROM {TABLE}")
        classes = {c for p, c in stored if period_of(p) == restated}
        assert classes == {"Correction"}, f"old figures of {restated} still stored: {classes}"
