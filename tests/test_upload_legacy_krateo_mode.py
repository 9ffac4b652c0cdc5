"""Krateo's scraper (no source/run/part) still works, minus Krateo's data loss.

Cases:
- `type` is case-insensitive; empty or missing means cost (Krateo answered 500 for a missing type);
- a re-sent batch replaces the rows sharing Krateo's key instead of duplicating them, and every
  column is refreshed (Krateo refreshed only billedcost);
- rows in ONE request sharing Krateo's key (usage + credit + tax) are all kept (Krateo kept one);
- cost: '' in a DOUBLE column is 0.0; record value/timestamp are not stored; unknown labels become columns;
- resource: '' average is 0.0 and (resourceid, metricname, timestamp) rows are replaced;
- generic (Krateo's handler refused it): labels as columns plus value and timestamp, appended.
"""

from __future__ import annotations

from typing import Any

import pytest
from dbhandler_server import DbHandler, dbhandler_fixture  # noqa: F401 - the `dbhandler` fixture

KEY = {"ResourceId": "vm1", "ResourceName": "vm1", "BillingPeriodStart": "2024-01-01T00:00:00Z",
       "BillingPeriodEnd": "2024-02-01T00:00:00Z", "ChargePeriodStart": "2024-01-01T00:00:00Z",
       "ChargePeriodEnd": "2024-01-02T00:00:00Z", "SkuPriceId": "sku1"}


def rec(**labels: str) -> dict[str, Any]:
    return {"labels": KEY | labels, "value": 1.0, "timestamp": 1700000000}


@pytest.mark.parametrize("type_", [pytest.param(None, id="missing"), pytest.param("", id="empty"),
                                   pytest.param("COST", id="upper"), pytest.param("Cost", id="mixed")])
def test_type_defaults_to_cost_and_ignores_case(dbhandler: DbHandler, type_: str | None) -> None:
    params = {"table": "costs"} | ({"type": type_} if type_ is not None else {})
    resp = dbhandler.upload([rec(BilledCost="3.5", ListCost="")], params)
    assert resp.status_code == 200, resp.text
    assert resp.json()["committed"] is True
    assert dbhandler.sql("SELECT billedcost, listcost FROM costs") == [[3.5, None]]  # empty is NULL, not 0.0


def test_resent_batch_replaces_rows_by_krateos_key_and_refreshes_every_column(dbhandler: DbHandler) -> None:
    assert dbhandler.upload([rec(BilledCost="1", ChargeDescription="old", Extra="a")], {"table": "costs"}).status_code == 200
    assert dbhandler.upload([rec(BilledCost="2", ChargeDescription="new", Extra="b")], {"table": "costs"}).status_code == 200
    assert dbhandler.sql("SELECT billedcost, chargedescription, extra FROM costs") == [[2.0, "new", "b"]]


def test_rows_sharing_the_key_in_one_request_are_all_kept(dbhandler: DbHandler) -> None:
    batch = [rec(BilledCost="10", ChargeCategory="Usage"), rec(BilledCost="-3", ChargeCategory="Credit"),
             rec(BilledCost="1.4", ChargeCategory="Tax")]
    for _ in range(2):
        assert dbhandler.upload(batch, {"table": "costs", "type": "cost"}).status_code == 200
    got = dbhandler.sql("SELECT chargecategory, billedcost FROM costs ORDER BY chargecategory")
    assert got == [["Credit", -3.0], ["Tax", 1.4], ["Usage", 10.0]]


def test_record_value_and_timestamp_are_not_stored_for_cost(dbhandler: DbHandler) -> None:
    assert dbhandler.upload([rec(BilledCost="1")], {"table": "costs"}).status_code == 200
    cols = [r[0] for r in dbhandler.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'costs'")]
    assert "value" not in cols and "timestamp" not in cols and "billedcost" in cols


def test_resource_average_empty_is_null_and_rows_are_replaced_by_key(dbhandler: DbHandler) -> None:
    def res(avg: str) -> dict[str, Any]:
        return {"labels": {"ResourceId": "vm1", "metricName": "cpu", "timestamp": "2024-01-01T00:00:00Z",
                           "average": avg, "unit": "Percent"}, "value": 0, "timestamp": 1700000000}

    params = {"table": "costs_res", "type": "resource"}
    assert dbhandler.upload([res("")], params).status_code == 200
    assert dbhandler.sql("SELECT average FROM costs_res") == [[None]]  # Krateo stored 0.0: a missing average is no reading
    assert dbhandler.upload([res("42.5")], params).status_code == 200
    assert dbhandler.sql("SELECT resourceid, metricname, timestamp, average, unit FROM costs_res") == [
        ["vm1", "cpu", 1704067200000, 42.5, "Percent"]]


def test_generic_stores_labels_value_and_timestamp(dbhandler: DbHandler) -> None:
    recs = [{"labels": {"pod": "a", "Namespace": "x", "value": "7"}, "value": 7.0, "timestamp": 1700000000},
            {"labels": {"pod": "b", "Namespace": "x"}, "value": 2.5, "timestamp": 1700000060}]
    resp = dbhandler.upload(recs, {"table": "metrics", "type": "generic", "value": "2"})
    assert resp.status_code == 200, resp.text
    got = dbhandler.sql("SELECT pod, namespace, label_value, value, timestamp FROM metrics ORDER BY pod")
    assert got == [["a", "x", "7", 7.0, 1700000000000], ["b", "x", None, 2.5, 1700000060000]]
