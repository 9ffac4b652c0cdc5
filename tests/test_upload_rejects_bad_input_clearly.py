"""/upload answers bad input with a clear JSON error and loses nothing already stored.

Cases (each after a good upload whose rows must stay intact):
- no table, an SQL injection in the table name, an unknown type, a bad part number -> 400;
- a body that is not JSON, a non-JSON content type, a JSON non-list -> 400 with Krateo's messages;
- `[]` -> 200 "No data to process";
- some bad rows -> 200, per-row errors naming row and column, the good rows stored;
- every row bad -> 400 listing them;
- missing, wrong or non-Basic credentials -> 401, also right after a correct call;
- base64-encoded user and password (Krateo's fallback) are accepted;
- wrong method -> 405, /compute shapes as Krateo (404 unknown notebook, 400, 405), unknown path -> 404, all JSON; /_sql with bad credentials -> 401;
- the database down (CrateDB mode, nothing listening) -> 503 with Retry-After.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from dbhandler_server import DbHandler, dbhandler_fixture  # noqa: F401 - the `dbhandler` fixture

GOOD = [{"labels": {"BilledCost": "1.25", "BillingPeriodStart": "2024-01-01T00:00:00Z", "ResourceId": "keep"},
         "value": 1.25, "timestamp": 1700000000}]
PARAMS = {"table": "costs", "type": "cost"}


def seed(server: DbHandler) -> None:
    resp = server.upload(GOOD, PARAMS)
    assert resp.status_code == 200, resp.text


def intact(server: DbHandler) -> None:
    assert server.sql("SELECT resourceid, billedcost FROM costs") == [["keep", 1.25]]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("params", "body", "ctype", "message"),
    [
        pytest.param({"type": "cost"}, GOOD, "application/json", "Table name not specified", id="no-table"),
        pytest.param({"table": "", "type": "cost"}, GOOD, "application/json", "Table name not specified", id="empty-table"),
        pytest.param({"table": "costs; DROP TABLE costs", "type": "cost"}, GOOD, "application/json", "invalid table name", id="sql-injection"),
        pytest.param({"table": 'costs"--', "type": "cost"}, GOOD, "application/json", "invalid table name", id="quote-injection"),
        pytest.param({"table": "costs", "type": "bogus"}, GOOD, "application/json", "bad upload parameters", id="unknown-type"),
        pytest.param({"table": "costs", "source": "s", "run": "r", "part": "x"}, GOOD, "application/json", "bad upload parameters", id="bad-part"),
        pytest.param({"table": "costs", "source": "s"}, GOOD, "application/json", "bad upload parameters", id="source-without-run"),
        pytest.param(PARAMS, b"{not json", "application/json", "Request must be JSON", id="not-json"),
        pytest.param(PARAMS, b"a,b\n1,2\n", "text/csv", "Request must be JSON", id="csv-content-type"),
        pytest.param(PARAMS, {"labels": {}}, "application/json", "Data must be a list of records", id="not-a-list"),
        pytest.param(PARAMS, b"garbage", "application/vnd.apache.arrow.stream", "Arrow IPC", id="bad-arrow"),
    ],
)
def test_malformed_requests_are_400_and_lose_nothing(dbhandler: DbHandler, params: dict[str, str], body: Any,
                                                    ctype: str, message: str) -> None:
    seed(dbhandler)
    resp = dbhandler.upload(body, params, content_type=ctype)
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert message in resp.json()["error"]
    intact(dbhandler)


def test_empty_list_is_nothing_to_process(dbhandler: DbHandler) -> None:
    seed(dbhandler)
    resp = dbhandler.upload([], PARAMS)
    assert (resp.status_code, resp.json()) == (200, {"result": "No data to process"})
    intact(dbhandler)


def test_some_bad_rows_are_reported_and_the_good_ones_stored(dbhandler: DbHandler) -> None:
    recs = [
        {"labels": {"BilledCost": "2.50", "BillingPeriodStart": "2024-01-01", "ResourceId": "ok1"}},
        {"labels": {"BilledCost": "two", "BillingPeriodStart": "2024-01-01", "ResourceId": "bad-number"}},
        {"labels": {"BilledCost": "1", "BillingPeriodStart": "yesterday", "ResourceId": "bad-date"}},
        {"labels": {"BilledCost": "1", "ResourceId": "no-period"}},
        "not a record",
        {"labels": {"BilledCost": "0", "BillingPeriodStart": "2024-01-01T00:00:00+01:00", "ResourceId": "ok2",
                    "ConsumedQuantity": "NULL"}},
        {"labels": {"BilledCost": "1", "BillingPeriodStart": "2024-01-01", "bad-label": "x"}},
        {"labels": {"BilledCost": "", "BillingPeriodStart": "2024-01-01", "ResourceId": "no-cost"}},
    ]
    resp = dbhandler.upload(recs, {"table": "other"})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert (answer["records_processed"], answer["records_rejected"]) == (2, 6)
    assert [(e["row"], e["loc"]) for e in answer["errors"]] == [
        (1, "billedcost"), (2, "billingperiodstart"), (3, "billingperiodstart"), (4, ""), (6, "bad-label"),
        (7, "billedcost")]
    assert answer["errors"][0]["value"] == "two" and "'two' is not a number" in answer["errors"][0]["msg"]
    assert "required" in answer["errors"][-1]["msg"]
    assert dbhandler.sql("SELECT resourceid, billedcost, billingperiodstart, consumedquantity FROM other ORDER BY resourceid") == [
        ["ok1", 2.5, 1704067200000, None], ["ok2", 0.0, 1704063600000, None]]


def test_every_row_bad_is_400_listing_them(dbhandler: DbHandler) -> None:
    seed(dbhandler)
    recs = [{"labels": {"BilledCost": "x", "BillingPeriodStart": "2024-01-01"}},
            {"labels": {"BilledCost": "1", "BillingPeriodStart": "never"}}]
    resp = dbhandler.upload(recs, PARAMS)
    assert resp.status_code == 400, resp.text
    assert [e["loc"] for e in resp.json()["errors"]] == ["0.billedcost", "1.billingperiodstart"]
    intact(dbhandler)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(basic("finops", "wrong"), id="wrong-password"),
        pytest.param(basic("nobody", "s3cret"), id="unknown-user"),
        pytest.param({"Authorization": "Bearer abc"}, id="not-basic"),
        pytest.param({"Authorization": "Basic !!!"}, id="garbled"),
    ],
)
def test_bad_credentials_are_401_even_after_a_correct_call(dbhandler: DbHandler, headers: dict[str, str]) -> None:
    seed(dbhandler)
    resp = dbhandler.upload(GOOD, PARAMS, headers=headers)
    assert resp.status_code == 401, resp.text
    assert "error" in resp.json()
    intact(dbhandler)


def test_base64_encoded_credentials_are_accepted(dbhandler: DbHandler) -> None:
    user, password = (base64.b64encode(s.encode()).decode() for s in ("finops", "s3cret"))
    resp = dbhandler.upload(GOOD, PARAMS, headers=basic(user, password))
    assert resp.status_code == 200, resp.text
    intact(dbhandler)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/upload", 405, id="get-upload"),
        pytest.param("POST", "/compute/no-such-notebook", 404, id="compute-unknown-notebook"),
        pytest.param("GET", "/compute", 400, id="compute-url-composition"),
        pytest.param("PUT", "/compute/x", 405, id="compute-wrong-method"),
        pytest.param("GET", "/nowhere", 404, id="unknown"),
        pytest.param("GET", "/_sql", 405, id="get-sql"),
    ],
)
def test_other_routes_answer_json(dbhandler: DbHandler, method: str, path: str, status: int) -> None:
    resp = httpx.request(method, dbhandler.url + path, headers=dbhandler.auth(), timeout=30)
    assert resp.status_code == status
    assert "error" in resp.json()


def test_sql_endpoint_checks_credentials(dbhandler: DbHandler) -> None:
    resp = httpx.post(dbhandler.url + "/_sql", json={"stmt": "SELECT 1"}, headers=basic("finops", "wrong"), timeout=30)
    assert resp.status_code == 401
    ok = httpx.post(dbhandler.url + "/_sql", json={"stmt": "SELECT 1"}, headers=dbhandler.auth(), timeout=30)
    assert ok.status_code == 200 and ok.json()["rows"] == [[1]]


def test_banner_is_cratedb_shaped(dbhandler: DbHandler) -> None:
    banner = httpx.get(dbhandler.url + "/", timeout=30).json()
    assert banner["finops_embedded"] is True and "number" in banner["version"]


def test_database_down_is_503_with_retry_after(tmp_path: Any) -> None:
    from dbhandler_server import start_dbhandler

    from functions.local.supervisor import free_port

    down = f"http://127.0.0.1:{free_port()}"
    server = start_dbhandler(tmp_path, env={"FINOPS_DB_MODE": "cratedb", "FINOPS_DB_URL": down})
    try:
        resp = server.upload(GOOD, PARAMS)
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["Retry-After"]) > 0
        sql = httpx.post(server.url + "/_sql", json={"stmt": "SELECT 1"}, headers=server.auth(), timeout=30)
        assert sql.status_code == 404 and "CrateDB directly" in sql.json()["error"]
        assert httpx.get(server.url + "/", timeout=30).status_code == 200
    finally:
        server.stop()


def test_a_run_whose_every_row_is_rejected_is_still_the_latest_run(dbhandler: DbHandler) -> None:
    """Part of a sourced run with nothing acceptable: 200 (the run is not failed), the rejects and the
    ledger say so, and the ledger's commit marker makes it the source's latest run (alerts see it)."""
    source = {"table": "marked", "source": "ExporterScraperConfig/ns/m", "part": "0", "final": "true"}
    good = [{"labels": {"BilledCost": "1", "BillingPeriodStart": "2024-01-01", "BillingCurrency": "EUR"}}]
    bad = [{"labels": {"BilledCost": "$1,000.00", "BillingPeriodStart": "2024-01-01", "BillingCurrency": "EUR"}}]
    assert dbhandler.upload(good, source | {"run": "r1"}).status_code == 200
    resp = dbhandler.upload(bad, source | {"run": "r2"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["records_processed"], resp.json()["records_rejected"]) == (0, 1)
    latest = dbhandler.sql("SELECT finops_run FROM finops_ledger WHERE finops_source = ? AND finops_part = -1 "
                           "ORDER BY recorded_at DESC LIMIT 1", ["ExporterScraperConfig/ns/m"])
    assert latest == [["r2"]]
    assert dbhandler.sql("SELECT SUM(rows_received), SUM(rows_stored), SUM(rows_rejected) FROM finops_ledger "
                         "WHERE finops_run = 'r2'") == [[1, 0, 1]]
    assert dbhandler.sql("SELECT value FROM finops_rejects WHERE finops_run = 'r2'") == [["$1,000.00"]]
