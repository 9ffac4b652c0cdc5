"""The front door's allow-list accepts every statement our code and shipped notebooks send, and refuses DuckDB's own.

Accepted: statements are captured, never listed by hand. A real database handler runs on 127.0.0.1
in embedded mode (payloads by reference, `stmts` transactions, its own SQL listeners); this file is
its functions-framework source (target `allow_list_recording_dbhandler`): the real dbhandler whose
engine reports every caller statement (`Engine.on_statement`) to a log, whichever way it came (the
handler's own listener, the public `/_sql`, the notebooks' listener). The flows are the CrateDB-mode
grammar test's (tests/test_cratedb_mode_sql_parses_under_cratedb_grammar.py), run here the embedded
way: uploads (JSON and Arrow parts, refused rows, findings, legacy uploads), focus ingest, aicost
ingest with alerts and the metrics scrape, the database snapshot store, the optimizer, and every
shipped crds/examples/notebook-*.yaml stored, run and deleted. Every flow must succeed (the handler
applied the allow-list to each statement as it came), and every distinct statement is fed to
`sql_policy.admit` here again: all accepted. The upload flow must have used the bulk path by
reference (`finops_payload(...)`).

Refused: every DuckDB-only statement kind, every table function of this DuckDB build but the five
allowed (as a query, and inside INSERT ... SELECT, where only tokens are read), every system view,
and the functions the list names; the no-ops of the list are the dialect's no-ops.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_cratedb_mode_sql_parses_under_cratedb_grammar as flows
import yaml
from dbhandler_server import start_function, stop_process

from functions.local.crstore import CrStore
from functions.local.supervisor import free_port
from functions.storage import sql_policy
from functions.storage.dialect import NOOP, SqlError, payload_view

LOG_ENV = "FINOPS_TEST_ENGINE_SQL_LOG"

# ------------------------------------------------------------------ the recording handler (server side)

_hook_lock = threading.Lock()
_hooked: list[bool] = []


def allow_list_recording_dbhandler(request: Any) -> Any:
    """functions-framework target: the real dbhandler, its engine reporting each caller statement to the log."""
    from functions.stages.dbhandler import router

    with _hook_lock:
        if not _hooked:
            router.engine(router.current_settings()).on_statement = _record
            _hooked.append(True)
    return router.handle(request)


_log_lock = threading.Lock()


def _record(stmt: str) -> None:
    with _log_lock, open(os.environ[LOG_ENV], "a", encoding="utf-8") as fh:
        fh.write(json.dumps(stmt) + "\n")


# ------------------------------------------------------------------ the stack


@pytest.fixture(scope="module", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[flows.Stack]:
    tmp = tmp_path_factory.mktemp("allow-list")
    log, state, port = tmp / "sql.jsonl", tmp / "state", free_port()
    log.touch()
    env = {"FINOPS_DB_MODE": "embedded", "FINOPS_DB_PATH": str(tmp / "db" / "finops.duckdb"),
           "FINOPS_DB_USERS": json.dumps({"crate": "", flows.USER: flows.PASSWORD}), LOG_ENV: str(log)}
    docs = list(yaml.safe_load_all((flows.EXAMPLES / "databaseconfig.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["stringData"]["password"] = flows.PASSWORD
    CrStore(state).apply(docs)
    process = start_function("allow_list_recording_dbhandler", port, env, tmp / "dbhandler.log", source=Path(__file__))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv(flows.PLAIN_ENV, raising=False)  # the embedded way: payloads by reference, transactions
            yield flows.Stack(f"http://127.0.0.1:{port}", state, log)
    finally:
        stop_process(process)


def _sent_since(stack: flows.Stack, offset: int) -> list[str]:
    with stack.log.open("rb") as fh:
        fh.seek(offset)
        return [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]


def _refusal(stmt: str) -> str | None:
    try:
        sql_policy.admit(stmt, payload_view)
    except SqlError as exc:
        return exc.message
    return None


FLOWS: list[tuple[str, Callable[[flows.Stack], None], Callable[[flows.Stack], None] | None, int]] = [
    ("uploads", flows.run_uploads, None, 40),
    ("focus-ingest", flows.run_focus_ingest, None, 4),
    ("aicost", flows.run_aicost, None, 8),
    ("snapshots", flows.run_snapshots, None, 6),
    ("optimizer", flows.run_optimizer, flows.setup_optimizer, 3),
    ("notebooks", flows.run_notebooks, flows.setup_notebooks, 10),
]


@pytest.mark.parametrize(("run", "setup", "at_least"), [f[1:] for f in FLOWS], ids=[f[0] for f in FLOWS])
def test_every_statement_a_flow_sends_is_allowed(stack: flows.Stack, run: Callable[[flows.Stack], None],
                                                 setup: Callable[[flows.Stack], None] | None, at_least: int) -> None:
    if setup is not None:
        setup(stack)
    start = stack.offset()
    run(stack)  # asserts the flow's answers: a statement refused by the handler would fail it here
    distinct = sorted(set(_sent_since(stack, start)))
    print(f"\n{len(distinct)} distinct statements:\n  " + "\n  ".join(distinct))
    refused = {stmt: why for stmt in distinct if (why := _refusal(stmt)) is not None}
    assert not refused, "the allow-list refuses statements our code sends:\n" + "\n".join(
        f"- {stmt}\n    {why}" for stmt, why in refused.items())
    assert len(distinct) >= at_least, f"only {len(distinct)} distinct statements recorded"


def test_uploads_took_the_bulk_path_by_reference(stack: flows.Stack) -> None:
    start = stack.offset()
    flows.send_run(stack, "al_bulk", "cost", "run-b", [[flows.cost("a", flows.JAN, "1.00")],
                                                       flows.arrow([flows.cost("b", flows.FEB, "2.00")])])
    sent = _sent_since(stack, start)
    by_reference = [s for s in sent if "finops_payload('" in s]
    assert by_reference and all(_refusal(s) is None for s in sent), sent


# ------------------------------------------------------------------ DuckDB's own: refused

DUCKDB_ONLY = [
    "ATTACH '/tmp/x.db' AS x", "ATTACH DATABASE ':memory:' AS m", "DETACH x", "USE x",
    "COPY t TO '/tmp/t.csv'", "COPY (SELECT 1) TO '/tmp/t.parquet' (FORMAT parquet)", "EXPORT DATABASE '/tmp/d'",
    "IMPORT DATABASE '/tmp/d'", "INSTALL httpfs", "FORCE INSTALL httpfs", "LOAD httpfs", "UPDATE EXTENSIONS",
    "SET memory_limit = '10GB'", "SET threads = 1", "SET GLOBAL threads = 1", "SET SESSION threads = 1",
    "SET VARIABLE v = 1", "RESET threads", "SET enable_external_access = true",
    "PRAGMA database_list", "PRAGMA threads = 1", "PRAGMA table_info('t')", "CHECKPOINT", "FORCE CHECKPOINT",
    "VACUUM", "ANALYZE", "CALL pragma_version()", "EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT 1",
    "PREPARE p AS SELECT 1", "EXECUTE p", "DEALLOCATE p", "SUMMARIZE t", "DESCRIBE t", "SHOW TABLES",
    "SHOW ALL TABLES", "PIVOT t ON a USING sum(b)", "FROM t", "CREATE MACRO m(a) AS a",
    "CREATE OR REPLACE MACRO m(a) AS a", "CREATE FUNCTION f(a) AS a", "CREATE SECRET s (TYPE s3)",
    "CREATE PERSISTENT SECRET s (TYPE s3)", "CREATE VIEW v AS SELECT 1", "CREATE TYPE mood AS ENUM ('a')",
    "CREATE SEQUENCE s", "CREATE SCHEMA s", "CREATE INDEX i ON t (a)", "CREATE TEMP TABLE x (a INT)",
    "CREATE OR REPLACE TABLE x (a INT)", "DROP VIEW v", "DROP MACRO m", "DROP SCHEMA s", "DROP SECRET s",
    "ALTER VIEW v RENAME TO w", "INSERT OR REPLACE INTO t VALUES (1)", "TRUNCATE t",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "SELECT 1; SELECT 2",
    "SELECT * FROM '/etc/passwd'", "SELECT * FROM 'data.csv'", "SELECT * FROM \"data.parquet\"",
    "SELECT * FROM (FROM '/etc/passwd')", "SELECT * FROM t WHERE a IN (FROM 's3://b/k.parquet')",
    "SELECT current_setting('threads')", "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "SELECT pg_sleep(1)", "SELECT sleep_ms(1)", "SELECT * FROM pg_catalog.pg_settings", "SELECT * FROM system.main.t",
    "INSERT INTO t SELECT * FROM '/etc/passwd'", "UPDATE t SET a = (SELECT current_setting('threads'))",
    "DELETE FROM t WHERE a IN (SELECT * FROM duckdb_settings())", "CREATE TABLE x AS SELECT * FROM pg_settings",
]


@pytest.mark.parametrize("stmt", DUCKDB_ONLY)
def test_duckdb_only_statements_are_refused(stmt: str) -> None:
    why = _refusal(stmt)
    assert why is not None and why.startswith("UnsupportedFeatureException["), f"{stmt!r}: {why}"


def _table_functions() -> list[str]:
    allowed = {r.name for r in sql_policy.ALLOW_LIST if r.kind == "table function" and r.allowed}
    found = sorted(sql_policy._catalogue().table_functions - allowed)  # this build's own list, not ours
    assert {"read_csv", "read_text", "read_blob", "glob", "query", "query_table", "duckdb_settings",
            "parquet_scan", "sniff_csv", "pragma_version"} <= set(found)
    return found


@pytest.mark.parametrize("name", _table_functions())
def test_every_other_table_function_of_the_build_is_refused(name: str) -> None:
    for stmt in (f"SELECT * FROM {name}()", f"SELECT * FROM t WHERE a IN (SELECT * FROM {name}('x'))",
                 f"INSERT INTO t (a) SELECT * FROM {name}('x')", f"CREATE TABLE x AS SELECT * FROM main.{name}()"):
        why = _refusal(stmt)
        assert why is not None and f"{name}()" in why, f"{stmt!r}: {why}"


@pytest.mark.parametrize("name", sorted(sql_policy._catalogue().system_views))
def test_every_system_view_is_refused(name: str) -> None:
    for stmt in (f"SELECT * FROM {name}", f"INSERT INTO t (a) SELECT count(*) FROM {name}"):
        why = _refusal(stmt)
        assert why is not None and name in why, f"{stmt!r}: {why}"


@pytest.mark.parametrize("stmt", [
    "SELECT * FROM unnest([1, 2])", "SELECT * FROM range(3)", "SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM json_each('{\"a\": 1}')", "SELECT * FROM json_tree('[1]')",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'doc'",
    "SELECT schema_name FROM information_schema.schemata",
    "SELECT histogram(a), repeat('x', 2), range(3) FROM t", "INSERT INTO t (a) SELECT repeat('x', 2)",
    "CREATE TABLE IF NOT EXISTS summary (query TEXT, histogram TEXT)", "INSERT INTO summary (query) VALUES (?)",
    "SELECT extract(year FROM '2024-01-01'::DATE)", "UPDATE t SET a = trim(both 'x' FROM 'xax')",
    "SELECT * FROM (VALUES (1)) AS query(a)", "DELETE FROM t WHERE a IN (SELECT a FROM range(3) r(a))",
])
def test_what_our_clients_may_use_is_accepted(stmt: str) -> None:
    assert _refusal(stmt) is None


@pytest.mark.parametrize("stmt", ["REFRESH TABLE t", "OPTIMIZE TABLE t", "BEGIN", "START TRANSACTION", "COMMIT",
                                  "END", "ROLLBACK"])
def test_the_no_ops_are_the_dialects(stmt: str) -> None:
    assert sql_policy.admit(stmt) == NOOP
    listed = {r.name for r in sql_policy.ALLOW_LIST if r.kind == "no-op" and r.allowed}
    assert any(stmt.startswith(name) for name in listed)


def test_refusals_name_the_construct_in_a_400() -> None:
    with pytest.raises(SqlError) as caught:
        sql_policy.admit("SELECT * FROM t JOIN read_csv('/etc/passwd') p ON true")
    assert caught.value.status == 400 and caught.value.code == 4000
    assert caught.value.message.startswith("UnsupportedFeatureException[the table function read_csv()")
