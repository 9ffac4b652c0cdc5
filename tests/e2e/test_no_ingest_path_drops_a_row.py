"""No ingest path drops a row without a trace: for each, received = stored + rejected, in the ledger.

Cases (one real local stack; each path fed rows shaped like the real world, some not FOCUS-conformant;
"received" is what the source holds, counted by the test, never taken from our own code):
- FOCUS CSV (tests/data/focus-1.0-realworld.csv, BOM, NULL literals) through exporter and scraper;
- FocusConfig-list JSON (the exporter's cost JSON path) with a bad and a NULL billedCost;
- Parquet (the same rows as the CSV, all text) served as application/vnd.apache.parquet;
- a FocusConfig CR with NULL literals (one row received, one stored);
- Prometheus exposition text from a foreign endpoint (a ScraperConfig, generic rows);
- an Arrow IPC bulk upload straight to /upload (a multi-part run with bad cells in both parts);
- Krateo's JSON records straight to /upload (legacy mode, no source) with malformed records.
For each: the source's row count = the ledger's rows received = stored + rejected; stored = the rows
in the table; rejected = the distinct rows in finops_rejects; and BilledCost received = stored +
rejected to the cent where the path carries cost.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from e2e_stack import DB_REF, NAMESPACE, E2EStack, database_docs, esc, secret, wait_until
from loopback_http import Reply, Seen, serve
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from functions.codecs import records
from functions.local.supervisor import free_port

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent.parent / "data"
CENT = Decimal("0.01")


def ledger_of(stack: E2EStack, where: str, args: list[Any]) -> tuple[int, int, int, Decimal, Decimal, Decimal]:
    """(received, stored, rejected, BilledCost received, stored, rejected) over the latest run matching `where`."""
    run = stack.sql(f"SELECT finops_run FROM finops_ledger WHERE {where} ORDER BY recorded_at DESC LIMIT 1", args)[0][0]
    row = stack.sql("SELECT SUM(rows_received), SUM(rows_stored), SUM(rows_rejected), SUM(billedcost_received), "
                    "SUM(billedcost_stored), SUM(billedcost_rejected) FROM finops_ledger WHERE finops_run = ?", [run])[0]
    return (int(row[0]), int(row[1]), int(row[2]), *(Decimal(repr(v or 0.0)) for v in row[3:]))  # type: ignore[return-value]


def check(stack: E2EStack, table: str, where: str, args: list[Any], received: int) -> tuple[int, int]:
    got, stored, rejected, cost_in, cost_stored, cost_rejected = ledger_of(stack, where, args)
    assert (got, stored + rejected) == (received, received), (table, got, stored, rejected)
    by_source = where.startswith("finops_source")
    in_table = stack.sql(f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if by_source else ""), args if by_source else None)
    assert in_table[0][0] == stored, (table, in_table, stored)
    listed = stack.sql(f"SELECT COUNT(DISTINCT CAST(finops_part AS TEXT) || ':' || CAST(row_number AS TEXT)) FROM finops_rejects WHERE {where} AND finops_run = "
                       f"(SELECT finops_run FROM finops_ledger WHERE {where} ORDER BY recorded_at DESC LIMIT 1)", args * 2)
    assert listed[0][0] == rejected, (table, listed, rejected)
    assert abs(cost_in - cost_stored - cost_rejected) < CENT / 2, (table, cost_in, cost_stored, cost_rejected)
    return stored, rejected


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_every_ingest_path_accounts_for_every_row(stack: E2EStack) -> None:
    csv_text = (DATA / "focus-1.0-realworld.csv").read_text(encoding="utf-8-sig")
    rows = csv_rows(csv_text)
    parquet = io.BytesIO()
    pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), parquet)
    focus_list = json.loads((DATA / "focusconfig-list.json").read_text())
    items = focus_list["items"]
    items.append(json.loads(json.dumps(items[0])))  # a third, good item
    items[0]["spec"]["focusSpec"]["billedCost"] = "$27,000.00"
    items[1]["spec"]["focusSpec"]["billedCost"] = "NULL"
    bodies = {"/c.csv": (csv_text.encode("utf-8-sig"), "text/csv"),
              "/j.json": (json.dumps(focus_list).encode(), "application/json"),
              "/p.parquet": (parquet.getvalue(), "application/vnd.apache.parquet")}

    def route(seen: Seen) -> Reply:
        body, ctype = bodies[seen.path.split("?")[0]]
        return Reply(200, body, {"Content-Type": ctype})

    registry = CollectorRegistry()
    gauge = Gauge("queue_depth", "Depth.", ["queue"], registry=registry)
    for i in range(7):
        gauge.labels(f"q{i}").set(i * 1.5)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with serve(route) as api:
            stack.apply(secret("paths-api", {"server-url": api.url}), secret("paths-prom", {"server-url": f"http://127.0.0.1:{port}"}),
                        *database_docs())
            for name, path, table in (("p-csv", "/c.csv", "p_csv"), ("p-json", "/j.json", "p_json"),
                                      ("p-parquet", "/p.parquet", "p_parquet")):
                stack.apply(esc(name, path, "paths-api", table))
            results = {}
            for name, table, n in (("p-csv", "p_csv", len(rows)), ("p-json", "p_json", len(items)),
                                   ("p-parquet", "p_parquet", len(rows))):
                ref = f"ExporterScraperConfig/{NAMESPACE}/{name}"
                assert stack.run(ref).rc == 3
                results[name] = check(stack, table, "finops_source = ?", [ref], n)
            assert results["p-csv"] == results["p-parquet"] == (7, 3)
            assert results["p-json"] == (len(items) - 2, 2)

        # FocusConfig: NULL literals are NULL, one row received and stored
        fc = {"apiVersion": "finops.krateo.io/v1", "kind": "FocusConfig", "metadata": {"name": "p-fc", "namespace": NAMESPACE},
              "spec": {"focusSpec": {"billedCost": "12.5", "billingCurrency": "USD", "billingPeriodStart": "2025-01-01T00:00:00Z",
                                     "billingPeriodEnd": "2025-02-01T00:00:00Z", "chargePeriodStart": "2025-01-01T00:00:00Z",
                                     "chargePeriodEnd": "2025-02-01T00:00:00Z", "chargeCategory": "Purchase",
                                     "serviceCategory": "Compute", "invoiceIssuerName": "ACME", "resourceId": "NULL",
                                     "chargeDescription": "null", "consumedQuantity": "NULL", "consumedUnit": "NULL"},
                       "scraperConfig": {"tableName": "p_fc", "pollingInterval": "1h", "scraperDatabaseConfigRef": DB_REF}}}
        stack.apply(fc)
        wait_until(lambda: stack.sql("SELECT table_name FROM information_schema.tables WHERE table_name = 'finops_ledger'")
                   and stack.sql("SELECT COUNT(*) FROM finops_ledger WHERE target_table = 'p_fc'")[0][0], what="the FocusConfig row")
        assert check(stack, "p_fc", "target_table = ?", ["p_fc"], 1) == (1, 0)
        assert stack.sql("SELECT resourceid, chargedescription, billedcost, consumedquantity, consumedunit FROM p_fc") == [
            [None, None, 12.5, None, None]]

        # exposition text from a foreign endpoint
        scfg = {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig", "metadata": {"name": "p-text", "namespace": NAMESPACE},
                "spec": {"tableName": "p_text", "pollingInterval": "5m", "metricType": "generic",
                         "generic": {"metricName": "queue_depth", "valueColumnIndex": 0},
                         "api": {"path": "/metrics", "verb": "GET", "endpointRef": {"name": "paths-prom", "namespace": NAMESPACE}},
                         "scraperDatabaseConfigRef": DB_REF}}
        stack.finops("apply", "-f", _yaml(stack, scfg))
        assert stack.run(f"ScraperConfig/{NAMESPACE}/p-text").rc == 0
        assert check(stack, "p_text", "finops_source = ?", [f"ScraperConfig/{NAMESPACE}/p-text"], 7) == (7, 0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    # Arrow bulk, a two-part run straight to /upload
    db = stack.info()["db"]
    auth = {"Authorization": "Basic " + base64.b64encode(f"{db['user']}:{db['password']}".encode()).decode()}
    url = stack.url("dbhandler") + "/upload"
    part = {"BillingPeriodStart": ["2025-01-01T00:00:00Z", "NULL", "2025-01-01"], "BilledCost": ["1.5", "2", "x"],
            "BillingCurrency": ["USD", "USD", "USD"], records.VALUE_COLUMN: [1.5, 2.0, None]}
    params = {"table": "p_arrow", "type": "cost", "source": "bulk/test", "run": f"r-{time.time_ns()}"}
    for i in range(2):
        body = b"".join(records.write_ipc(pa.table(part).to_batches()))
        resp = httpx.post(url, params=params | {"part": str(i), **({"final": "true"} if i else {})}, content=body,
                          headers=auth | {"Content-Type": records.IPC_MEDIA_TYPE}, timeout=60)
        assert resp.status_code == 200, resp.text
    assert check(stack, "p_arrow", "finops_source = ?", ["bulk/test"], 6) == (2, 4)

    # Krateo's JSON records, legacy mode (no source), malformed records among them
    recs: list[Any] = [{"labels": {"BilledCost": "3", "BillingPeriodStart": "2025-01-01", "BillingCurrency": "EUR", "ResourceId": "a"}},
                       {"labels": {"BilledCost": "three", "BillingPeriodStart": "2025-01-01", "BillingCurrency": "EUR"}},
                       "not a record", {"labels": ["not", "an", "object"]},
                       {"labels": {"BilledCost": "4.25", "BillingPeriodStart": "2025-01-01", "BillingCurrency": "EUR", "ResourceId": "b"}}]
    resp = httpx.post(url, params={"table": "p_krateo"}, json=recs, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["records_processed"], resp.json()["records_rejected"]) == (2, 3)
    got, stored, rejected, cost_in, cost_stored, _ = ledger_of(stack, "target_table = ?", ["p_krateo"])
    assert (got, stored, rejected) == (5, 2, 3) and cost_stored == Decimal("7.25")
    reasons = stack.sql("SELECT row_number, column_name FROM finops_rejects WHERE target_table = 'p_krateo' ORDER BY row_number")
    assert [r[0] for r in reasons] == [1, 2, 3]


def _yaml(stack: E2EStack, doc: dict[str, Any]) -> str:
    import yaml

    path = stack.tmp / f"doc-{time.time_ns()}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return str(path)
