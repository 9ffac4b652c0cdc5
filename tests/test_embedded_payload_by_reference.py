"""The embedded engine's `finops_payload('<handle>')` extension: upload rows by reference, never by a foreign handle.

Cases:
- the dialect rewrites `finops_payload('<h>')` into the view its resolver names (quoted), anywhere in a
  statement (INSERT ... SELECT, IN subquery);
- without a resolver (no engine in this process) the call is refused with code 4000 naming the extension;
- a call without one string literal is a parse error;
- the engine: a registered typed Arrow table (string, double, timestamp, map) is inserted by an
  `INSERT ... SELECT ... FROM finops_payload(h)` with its types kept; the handle is refused once
  released, once expired, and when it names another process; unknown handles are refused;
- over CrateDB's HTTP protocol (the real database handler): a made-up handle answers 400 with the
  reason, and an Arrow upload (which goes by reference in embedded mode) lands its rows.
"""

from __future__ import annotations

import os
import time

import httpx
import pyarrow as pa
import pytest
from dbhandler_server import DbHandler, dbhandler_fixture  # noqa: F401 - the `dbhandler` fixture

from functions.codecs import records
from functions.storage.dialect import SqlError, translate
from functions.storage.engine import Engine


def _resolver(handle: str) -> str:
    return f"view_{handle}"


@pytest.mark.parametrize(
    ("stmt", "expected"),
    [
        pytest.param("INSERT INTO t (a) SELECT a FROM finops_payload('h1')", 'insert into t (a) select a from "view_h1"', id="insert-select"),
        pytest.param("DELETE FROM t WHERE p IN (SELECT DISTINCT p FROM FINOPS_PAYLOAD('h2'))",
                     'delete from t where p in (select distinct p from "view_h2")', id="subquery-upper-case"),
    ],
)
def test_payload_call_becomes_the_registered_view(stmt: str, expected: str) -> None:
    assert translate(stmt, _resolver) == expected


def test_payload_call_without_an_engine_is_refused() -> None:
    with pytest.raises(SqlError) as err:
        translate("SELECT * FROM finops_payload('x')")
    assert err.value.code == 4000 and err.value.status == 400
    assert "finops_payload('x') is an extension of the embedded engine" in err.value.message


@pytest.mark.parametrize("call", ["finops_payload()", "finops_payload(1)", "finops_payload(a)"], ids=["empty", "number", "identifier"])
def test_payload_call_takes_one_string_literal(call: str) -> None:
    with pytest.raises(SqlError, match="takes one string literal"):
        translate(f"SELECT * FROM {call}", _resolver)


@pytest.fixture
def engine() -> Engine:
    eng = Engine()
    eng.execute("CREATE TABLE t (name STRING, cost DOUBLE, ts TIMESTAMP, tags OBJECT(DYNAMIC))")
    return eng


def _payload() -> pa.Table:
    return pa.table({
        "name": pa.array(["a", None], pa.string()),
        "cost": pa.array([1.5, -2.25], pa.float64()),
        "ts": pa.array([1_704_067_200_000, None], pa.int64()).cast(pa.timestamp("ms")),
        "tags": pa.array([[("team", "x")], None], pa.map_(pa.string(), pa.string())),
    })


def test_registered_payload_is_inserted_with_its_types(engine: Engine) -> None:
    handle = engine.register_payload(_payload())
    assert handle.startswith(f"{os.getpid()}-")
    res = engine.execute(f"INSERT INTO t (name, cost, ts, tags) SELECT name, cost, ts, tags FROM finops_payload('{handle}')")
    assert res.rowcount == 2
    rows = engine.execute("SELECT name, cost, ts, tags['team'] FROM t ORDER BY cost").rows
    assert rows == [[None, -2.25, None, None], ["a", 1.5, 1_704_067_200_000, "x"]]


def _refusal(engine: Engine, handle: str) -> str:
    with pytest.raises(SqlError) as err:
        engine.execute(f"SELECT count(*) FROM finops_payload('{handle}')")
    assert err.value.code == 4000
    return err.value.message


def test_released_unknown_and_expired_handles_are_refused(engine: Engine) -> None:
    handle = engine.register_payload(_payload())
    assert engine.execute(f"SELECT count(*) FROM finops_payload('{handle}')").rows == [[2]]
    engine.release_payload(handle)
    engine.release_payload(handle)  # idempotent
    assert "unknown, released or expired" in _refusal(engine, handle)
    assert "unknown, released or expired" in _refusal(engine, f"{os.getpid()}-{'0' * 32}")
    short = engine.register_payload(_payload(), ttl=0.0)
    time.sleep(0.01)
    assert "unknown, released or expired" in _refusal(engine, short)


def test_a_handle_of_another_process_is_refused(engine: Engine) -> None:
    handle = engine.register_payload(_payload())
    foreign = f"{os.getpid() + 1}-{handle.partition('-')[2]}"
    assert "not registered by this process" in _refusal(engine, foreign)


def test_the_handler_refuses_a_made_up_handle_over_http(dbhandler: DbHandler) -> None:
    dbhandler.sql("CREATE TABLE t (a STRING)")
    resp = httpx.post(f"{dbhandler.url}/_sql", headers=dbhandler.auth(), timeout=30,
                      json={"stmt": "INSERT INTO t (a) SELECT a FROM finops_payload('12345-abc')"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 4000
    assert "not registered by this process" in resp.json()["error"]["message"]


def test_an_arrow_upload_lands_by_reference(dbhandler: DbHandler) -> None:
    table = pa.table({"BillingPeriodStart": ["2024-01-01T00:00:00Z"] * 3, "BilledCost": ["1.25", "2", "x"],
                      "Tags": ['{"team": "a"}', "env: prod", None], records.VALUE_COLUMN: [1.0, 2.0, 3.0]})
    body = b"".join(records.write_ipc(table.to_batches()))
    params = {"table": "costs", "type": "cost", "source": "ExporterScraperConfig/ns/n", "run": "r1", "part": "0", "final": "true"}
    resp = dbhandler.upload(body, params, content_type=records.IPC_MEDIA_TYPE)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert (answer["records_processed"], answer["records_rejected"], answer["committed"]) == (2, 1, True)
    assert [(e["row"], e["loc"], e["value"]) for e in answer["errors"]] == [(2, "billedcost", "x")]
    assert "'x' is not a number" in answer["errors"][0]["msg"]
    rows = dbhandler.sql("SELECT billedcost, tags['team'], tags['env'] FROM costs ORDER BY billedcost")
    assert rows == [[1.25, "a", None], [2.0, None, "prod"]]
    assert dbhandler.sql("SELECT count(*) FROM costs__finops_staging") == [[0]]
