"""/upload with source/run/part/final replaces snapshot slices, never duplicates.

Cases:
- a re-run of the same snapshot never duplicates rows;
- a restated period replaces the old figures; rows that vanished upstream vanish; a period the run
  does not carry is left alone; another source's rows are left alone;
- credit, tax and adjustment rows sharing Krateo's upsert key are all kept;
- a re-sent part replaces itself (idempotent); a retried final part changes nothing;
- a final part with earlier parts missing is a 409 naming them, and the run commits once they come;
- JSON and Arrow IPC bodies give the same rows;
- SUM(billedcost) is exact to the cent over many rows;
- resource rows are replaced by (resourceid, metricname, timestamp); generic by whole source.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from dbhandler_server import DbHandler, dbhandler_fixture  # noqa: F401 - the `dbhandler` fixture

from functions.codecs import records

SRC = "ExporterScraperConfig/finops/azure"
JAN, FEB = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"


def cost(resource: str, period: str, billed: str, category: str = "Usage", **extra: str) -> dict[str, Any]:
    labels = {"ResourceId": resource, "ResourceName": resource, "BillingPeriodStart": period,
              "BillingPeriodEnd": period, "ChargePeriodStart": period, "ChargePeriodEnd": period,
              "SkuPriceId": "sku", "BilledCost": billed, "ChargeCategory": category, "BillingCurrency": "EUR"}
    return {"labels": labels | extra, "value": float(billed or 0), "timestamp": 1700000000}


def send_run(server: DbHandler, run: str, parts: list[list[dict[str, Any]]], table: str = "costs",
             source: str = SRC, type_: str = "cost") -> list[dict[str, Any]]:
    answers = []
    for n, part in enumerate(parts):
        params = {"table": table, "type": type_, "source": source, "run": run, "part": str(n)}
        if n == len(parts) - 1:
            params["final"] = "true"
        resp = server.upload(part, params)
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    return answers


def rows(server: DbHandler, table: str = "costs") -> list[list[Any]]:
    return server.sql(f"SELECT resourceid, billingperiodstart, billedcost, chargecategory FROM {table} "
                      "ORDER BY resourceid, billingperiodstart, chargecategory, billedcost")


def test_rerun_of_the_same_snapshot_never_duplicates(dbhandler: DbHandler) -> None:
    snapshot = [[cost("a", JAN, "1.00"), cost("b", JAN, "2.00")], [cost("c", FEB, "3.00")]]
    send_run(dbhandler, "run-1", snapshot)
    first = rows(dbhandler)
    send_run(dbhandler, "run-2", snapshot)
    assert rows(dbhandler) == first
    assert len(first) == 3


def test_restated_period_replaces_and_vanished_rows_vanish(dbhandler: DbHandler) -> None:
    send_run(dbhandler, "run-1", [[cost("a", JAN, "1.00"), cost("b", JAN, "2.00"), cost("c", FEB, "3.00")]])
    send_run(dbhandler, "other", [[cost("z", JAN, "9.00")]], source="ExporterScraperConfig/finops/aws")
    send_run(dbhandler, "run-2", [[cost("a", JAN, "1.50")]])  # January restated; b vanished; February not sent
    assert rows(dbhandler) == [
        ["a", 1704067200000, 1.5, "Usage"],
        ["c", 1706745600000, 3.0, "Usage"],
        ["z", 1704067200000, 9.0, "Usage"],
    ]


def test_credit_tax_and_adjustment_rows_sharing_krateos_key_are_all_kept(dbhandler: DbHandler) -> None:
    same_key = [cost("a", JAN, "10.00"), cost("a", JAN, "-2.00", "Credit"), cost("a", JAN, "1.90", "Tax"),
                cost("a", JAN, "0.10", "Adjustment")]
    send_run(dbhandler, "run-1", [same_key])
    send_run(dbhandler, "run-2", [same_key])
    assert [r[3] for r in rows(dbhandler)] == ["Adjustment", "Credit", "Tax", "Usage"]
    assert dbhandler.sql("SELECT SUM(billedcost) FROM costs")[0][0] == pytest.approx(10.0)


def test_resent_part_replaces_itself_and_retried_final_changes_nothing(dbhandler: DbHandler) -> None:
    base = {"table": "costs", "type": "cost", "source": SRC, "run": "run-1"}
    for _ in range(2):
        assert dbhandler.upload([cost("a", JAN, "1.00"), cost("b", JAN, "2.00")], base | {"part": "0"}).status_code == 200
    final = dbhandler.upload([cost("c", JAN, "3.00")], base | {"part": "1", "final": "true"})
    assert final.status_code == 200 and final.json()["committed"] is True
    again = dbhandler.upload([cost("c", JAN, "3.00")], base | {"part": "1", "final": "true"})
    assert again.status_code == 200 and again.json()["committed"] is True
    assert [r[0] for r in rows(dbhandler)] == ["a", "b", "c"]


def test_final_part_with_missing_parts_is_a_conflict_until_they_arrive(dbhandler: DbHandler) -> None:
    base = {"table": "costs", "type": "cost", "source": SRC, "run": "run-1"}
    assert dbhandler.upload([cost("a", JAN, "1.00")], base | {"part": "0"}).status_code == 200
    resp = dbhandler.upload([cost("c", JAN, "3.00")], base | {"part": "2", "final": "true"})
    assert resp.status_code == 409, resp.text
    assert "[1]" in resp.json()["error"]
    assert dbhandler.sql("SELECT count(*) FROM costs")[0][0] == 0
    assert dbhandler.upload([cost("b", JAN, "2.00")], base | {"part": "1"}).status_code == 200
    resp = dbhandler.upload([cost("c", JAN, "3.00")], base | {"part": "2", "final": "true"})
    assert resp.status_code == 200 and resp.json()["committed"] is True
    assert [r[0] for r in rows(dbhandler)] == ["a", "b", "c"]


def test_empty_final_part_commits_the_run(dbhandler: DbHandler) -> None:
    base = {"table": "costs", "type": "cost", "source": SRC, "run": "run-1"}
    assert dbhandler.upload([cost("a", JAN, "1.00")], base | {"part": "0"}).status_code == 200
    resp = dbhandler.upload([], base | {"part": "1", "final": "true"})
    assert resp.status_code == 200 and resp.json() == {"result": "No data to process", "committed": True}
    assert [r[0] for r in rows(dbhandler)] == ["a"]


def test_json_and_arrow_bodies_give_the_same_rows(dbhandler: DbHandler) -> None:
    recs = [cost(f"r{i}", JAN if i % 2 else FEB, f"{i}.25", Tags=f"team: t{i % 3};url: https://x/{i}")
            for i in range(50)]
    table = records.from_json(recs)[0]
    send_run(dbhandler, "run-json", [recs], table="via_json")
    body = b"".join(records.write_ipc(table.to_batches()))
    params = {"table": "via_arrow", "type": "cost", "source": SRC, "run": "run-ipc", "part": "0", "final": "true"}
    resp = dbhandler.upload(body, params, content_type=records.IPC_MEDIA_TYPE)
    assert resp.status_code == 200, resp.text
    assert resp.json()["records_processed"] == 50
    query = "SELECT resourceid, billingperiodstart, billedcost, tags['team'], tags['url'] FROM {} ORDER BY resourceid"
    assert dbhandler.sql(query.format("via_json")) == dbhandler.sql(query.format("via_arrow"))
    assert len(dbhandler.sql(query.format("via_arrow"))) == 50


def test_sum_of_billed_cost_is_exact_to_the_cent(dbhandler: DbHandler) -> None:
    amounts = [f"{(i * 7919) % 100000 / 100:.2f}" for i in range(3000)]
    recs = [cost(f"r{i}", JAN, a) for i, a in enumerate(amounts)]
    send_run(dbhandler, "run-1", [recs[:1500], recs[1500:]])
    total = dbhandler.sql("SELECT SUM(billedcost), count(*) FROM costs")[0]
    assert total[1] == 3000
    assert Decimal(str(round(total[0], 2))) == sum(Decimal(a) for a in amounts)


def test_resource_rows_are_replaced_by_resource_metric_and_timestamp(dbhandler: DbHandler) -> None:
    def res(resource: str, ts: str, avg: str) -> dict[str, Any]:
        return {"labels": {"ResourceId": resource, "metricName": "cpu", "timestamp": ts, "average": avg, "unit": "%"},
                "value": 0, "timestamp": 1700000000}

    send_run(dbhandler, "run-1", [[res("vm1", "2024-01-01T00:00:00Z", "1"), res("vm1", "2024-01-01T01:00:00Z", "2")]],
             table="usage", type_="resource")
    send_run(dbhandler, "run-2", [[res("vm1", "2024-01-01T01:00:00Z", "5"), res("vm1", "2024-01-01T02:00:00Z", "")]],
             table="usage", type_="resource")
    got = dbhandler.sql("SELECT resourceid, metricname, timestamp, average FROM usage ORDER BY timestamp")
    assert got == [["vm1", "cpu", 1704067200000, 1.0], ["vm1", "cpu", 1704070800000, 5.0], ["vm1", "cpu", 1704074400000, None]]  # an empty average stays NULL


def test_generic_runs_replace_the_whole_source_slice(dbhandler: DbHandler) -> None:
    def gen(pod: str, v: float) -> dict[str, Any]:
        return {"labels": {"pod": pod, "namespace": "x"}, "value": v, "timestamp": 1700000000}

    send_run(dbhandler, "run-1", [[gen("a", 1), gen("b", 2)]], table="metrics", type_="generic")
    send_run(dbhandler, "run-2", [[gen("a", 3)]], table="metrics", type_="generic")
    got = dbhandler.sql("SELECT pod, namespace, value, timestamp FROM metrics ORDER BY pod")
    assert got == [["a", "x", 3.0, 1700000000000]]


def test_arrow_body_with_a_name_column_is_accepted(dbhandler: DbHandler) -> None:
    batch = pa.record_batch({"__name__": ["billed_cost"], "BilledCost": ["4.20"], "BillingPeriodStart": [JAN],
                             "__value__": [4.2], "__timestamp__": pa.array([1700000000], pa.int64())})
    body = b"".join(records.write_ipc([batch]))
    params = {"table": "costs", "source": SRC, "run": "r", "part": "0", "final": "true"}
    resp = dbhandler.upload(body, params, content_type=records.IPC_MEDIA_TYPE)
    assert resp.status_code == 200, resp.text
    assert dbhandler.sql("SELECT billedcost FROM costs") == [[4.2]]
