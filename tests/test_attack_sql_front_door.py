"""A database user's credentials reach no file, setting or extension of the host through `/_sql`.

A real engine on a DuckDB *file* under a state directory is served on 127.0.0.1 by the embedded SQL
listener; statements go through the real `crate` client (functions.clients.db) and as raw HTTP.
Cases:
- every reproduction of the issue (host files read with read_csv/read_text/glob/read_blob, ATTACH
  then CREATE TABLE in it, EXPORT DATABASE, SET/RESET of engine settings, CREATE MACRO, PRAGMA,
  CHECKPOINT, VACUUM, INSTALL/LOAD, COPY TO/FROM, a file name as a table, duckdb_settings()) and
  others of their kind (nested in subqueries, CTEs, joins, INSERT/UPDATE/DELETE/CREATE TABLE AS,
  quoted or commented names, system views, bulk_args and the `stmts` transaction): each a 400
  with CrateDB's JSON error body, code 4000, naming the construct; no file is created, nothing
  of a host file comes back;
- the engine is closed by itself, not only by the door: with the front door off (the benchmark's
  switch) the same statements are still refused by DuckDB as 4xx, the settings we set are the ones
  in force, and none can be changed; a file database still spills to `<file>.tmp`;
- what our own code needs still works on the closed engine: a payload by reference, a new column
  added on insert, information_schema reads;
- values DuckDB nests (a BLOB in a list or struct, maps with number keys, decimals, HUGEINT,
  intervals, `infinity` timestamps) come back as JSON, never as an HTML 500; an engine that fails
  (here: closed under the listener) answers CrateDB's JSON 500 with code 5000, no traceback.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest
from embedded_sql_server import serve

from functions.clients.db import Database, DatabaseError
from functions.storage import engine as engine_module
from functions.storage.engine import Engine

USER, PASSWORD = "finops", "s3cret"


@dataclass
class Target:
    url: str
    state: Path
    db_file: Path
    engine: Engine

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/_sql", content=orjson.dumps(body), auth=(USER, PASSWORD), timeout=30)

    def database(self) -> Database:
        return Database(self.url, USER, PASSWORD)


def _target(state: Path, *, front_door: bool) -> Iterator[Target]:
    (state / "db").mkdir(parents=True)
    db_file = state / "db" / "finops.duckdb"
    engine = Engine(db_file, front_door=front_door)
    engine.execute("CREATE TABLE t (name STRING, n DOUBLE)")
    engine.execute("INSERT INTO t (name, n) VALUES (?, ?)", ["a", 1.0])
    with serve(engine, {USER: PASSWORD}) as url:
        yield Target(url, state, db_file, engine)
    engine.close()


@pytest.fixture(scope="module", name="target")
def target_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _target(tmp_path_factory.mktemp("front-door") / "state", front_door=True)


@pytest.fixture(scope="module", name="doorless")
def doorless_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _target(tmp_path_factory.mktemp("no-door") / "state", front_door=False)


def reproductions(state: Path, db_file: Path) -> list[tuple[str, str, str]]:
    """(id, statement, what the refusal must name): the issue's, then others of their kind."""
    out = state.parent / "written"
    return [
        ("read-csv-passwd", "SELECT * FROM read_csv('/etc/passwd', header=false, sep=':')", "read_csv()"),
        ("read-text-environ", f"SELECT content FROM read_text('/proc/{os.getpid()}/environ')", "read_text()"),
        ("glob-state-dir", f"SELECT * FROM glob('{state}/*')", "glob()"),
        ("read-blob-db-file", f"SELECT * FROM read_blob('{db_file}')", "read_blob()"),
        ("attach", f"ATTACH '{out}.db' AS x", "ATTACH"),
        ("export-database", f"EXPORT DATABASE '{out}'", "EXPORT DATABASE"),
        ("set-memory-limit", "SET memory_limit = '10GB'", "SET memory_limit"),
        ("set-threads", "SET threads = 1", "SET threads"),
        ("reset", "RESET threads", "RESET threads"),
        ("set-external-access", "SET enable_external_access = true", "SET enable_external_access"),
        ("create-macro", "CREATE MACRO m(a) AS a + 1", "CREATE MACRO"),
        ("pragma-database-list", "PRAGMA database_list", "PRAGMA database_list"),
        ("checkpoint", "CHECKPOINT", "CHECKPOINT"),
        ("vacuum", "VACUUM", "VACUUM"),
        ("install", "INSTALL httpfs", "INSTALL httpfs"),
        ("load", "LOAD httpfs", "LOAD httpfs"),
        ("copy-to", f"COPY t TO '{out}.csv'", "COPY"),
        ("copy-from", "COPY t FROM '/etc/passwd'", "COPY"),
        ("file-as-table", "SELECT * FROM '/etc/passwd'", "a file name as a table"),
        ("duckdb-settings", "SELECT * FROM duckdb_settings()", "duckdb_settings()"),
        # of their kind
        ("query", "SELECT * FROM query('SELECT 1')", "query()"),
        ("query-table", "SELECT * FROM query_table('t')", "query_table()"),
        ("sniff-csv", "SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv()"),
        ("parquet-metadata", "SELECT * FROM parquet_metadata('/x.parquet')", "parquet_metadata()"),
        ("read-parquet", "SELECT * FROM read_parquet('/x.parquet')", "read_parquet()"),
        ("read-json", "SELECT * FROM read_json_auto('/x.json')", "read_json_auto()"),
        ("in-subquery", "SELECT name FROM t WHERE name IN (SELECT content FROM read_text('/etc/hostname'))", "read_text()"),
        ("in-cte", "WITH p AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM p", "read_csv()"),
        ("in-join", "SELECT * FROM t JOIN glob('/*') g ON true", "glob()"),
        ("in-scalar-subquery", "SELECT (SELECT count(*) FROM glob('/*')) AS n", "glob()"),
        ("from-first", "SELECT * FROM (FROM '/etc/passwd')", "a file name as a table"),
        ("file-in-from-list", "SELECT * FROM t, 'x.csv'", "a file name as a table"),
        ("quoted-file", 'SELECT * FROM "/etc/passwd"', "a file name as a table"),
        ("quoted-function", "SELECT * FROM \"read_csv\"('/etc/passwd')", "read_csv()"),
        ("commented-call", "SELECT * FROM read_csv/* x */('/etc/passwd')", "read_csv()"),
        ("upper-case-call", "SELECT * FROM READ_CSV('/etc/passwd')", "read_csv()"),
        ("insert-select", "INSERT INTO t (name) SELECT content FROM read_text('/etc/hostname')", "read_text()"),
        ("insert-select-file", "INSERT INTO t (name) SELECT * FROM '/etc/hostname'", "a file name as a table"),
        ("update-subquery", "UPDATE t SET name = (SELECT content FROM read_text('/etc/hostname'))", "read_text()"),
        ("delete-subquery", "DELETE FROM t WHERE name IN (SELECT file FROM glob('/*'))", "glob()"),
        ("create-table-as", "CREATE TABLE leak AS SELECT * FROM read_csv('/etc/passwd')", "read_csv()"),
        ("system-view", "SELECT * FROM pg_settings", "pg_settings"),
        ("duckdb-view", "SELECT * FROM duckdb_databases", "duckdb_databases"),
        ("pragma-view", "SELECT * FROM pragma_database_list", "pragma_database_list"),
        ("pg-catalog", "SELECT * FROM pg_catalog.pg_class", "pg_catalog"),
        ("current-setting", "SELECT current_setting('temp_directory')", "current_setting()"),
        ("insert-current-setting", "INSERT INTO t (name) SELECT current_setting('temp_directory')", "current_setting()"),
        ("serialized-sql", "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
         "json_execute_serialized_sql()"),
        ("sleep", "SELECT pg_sleep(30)", "pg_sleep()"),
        ("call", "CALL pragma_version()", "CALL"),
        ("use", "USE memory", "USE memory"),
        ("detach", "DETACH x", "DETACH x"),
        ("create-secret", "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')", "CREATE SECRET"),
        ("create-view", "CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("create-or-replace-table", "CREATE OR REPLACE TABLE t (a INT)", "CREATE OR REPLACE TABLE"),
        ("create-temp-table", "CREATE TEMP TABLE tt (a INT)", "CREATE TEMP TABLE"),
        ("summarize", "SUMMARIZE t", "SUMMARIZE t"),
        ("describe-in-from", "SELECT * FROM (DESCRIBE t)", "DESCRIBE"),
        ("explain-analyze", "EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE"),
        ("import-database", f"IMPORT DATABASE '{out}'", "IMPORT DATABASE"),
        ("update-extensions", "UPDATE EXTENSIONS", "UPDATE EXTENSIONS"),
        ("prepare", "PREPARE p AS SELECT 1", "PREPARE p"),
        # the engine's own views and internals, from every statement kind
        ("ctas-show-all-tables", "CREATE TABLE y AS FROM (SHOW ALL TABLES)", "SHOW"),
        ("insert-describe", "INSERT INTO t (name) SELECT column_name FROM (DESCRIBE t)", "DESCRIBE"),
        ("update-summarize", "UPDATE t SET name = (SELECT min(column_name) FROM (SUMMARIZE t))", "SUMMARIZE"),
        ("delete-show", "DELETE FROM t WHERE name IN (SELECT name FROM (SHOW TABLES))", "SHOW"),
        ("insert-pivot", "INSERT INTO t (name) SELECT * FROM (PIVOT t ON name USING sum(n))", "PIVOT"),
        ("info-view-unquoted", "SELECT * FROM finops_information_schema_columns", "finops_information_schema_columns"),
        ("info-view-as-string", "SELECT * FROM 'finops_information_schema_tables'", "finops_information_schema_tables"),
        ("rename-info-view", "ALTER TABLE finops_information_schema_columns RENAME TO zz", "finops_information_schema_columns"),
        ("drop-info-view", "DROP TABLE finops_information_schema_tables", "finops_information_schema_tables"),
        ("create-info-name", "CREATE TABLE finops_information_schema_tables (a INT)", "finops_information_schema_tables"),
        ("rename-to-bulk-source", "ALTER TABLE t RENAME TO finops_bulk_source", "finops_bulk_source"),
        ("temp-catalog", "SELECT * FROM temp.main.finops_information_schema_tables", "finops_information_schema_tables"),
        ("temp-schema", "INSERT INTO t (name) SELECT view_name FROM temp.information_schema.views", "temp"),
        ("create-in-temp", "CREATE TABLE temp.x (a INT)", "temp.x"),
        ("drop-in-system", "DROP TABLE system.main.x", "system.main.x"),
        # every item of a FROM/USING list is a scan, in every statement kind
        ("insert-file-in-from-list", "INSERT INTO t (name) SELECT t.name FROM t, '/etc/passwd'", "a file name as a table"),
        ("insert-quoted-file-in-list", 'INSERT INTO t (name) SELECT t.name FROM t, "a.csv"', "a file name as a table"),
        ("update-file-in-from-list", "UPDATE t SET name = b.c FROM t AS x, '/etc/passwd' b", "a file name as a table"),
        ("delete-file-in-using", "DELETE FROM t USING t AS x, '/etc/passwd' b", "a file name as a table"),
        ("insert-repeat-in-list", "INSERT INTO t (n) SELECT 1 FROM t, repeat(1, 100000000000)", "repeat()"),
        ("insert-histogram-in-list", "INSERT INTO t (name) SELECT 1 FROM t, histogram('t', n)", "histogram()"),
        ("update-repeat-in-list", "UPDATE t SET n = 1 FROM t AS x, repeat(1, 100000000000) r", "repeat()"),
        ("conflict-file-in-list", "INSERT INTO t (name) SELECT 'z' ON CONFLICT (name) DO UPDATE SET "
         "name = (SELECT 'y' FROM t, 'y.csv')", "a file name as a table"),
    ]


def _ids(state: Path = Path("/s")) -> list[str]:
    return [r[0] for r in reproductions(state, state / "db")]


def _case(target: Target, case_id: str) -> tuple[str, str]:
    found = {r[0]: r[1:] for r in reproductions(target.state, target.db_file)}
    return found[case_id]


def _assert_nothing_written(target: Target) -> None:
    left = sorted(p.name for p in target.state.parent.iterdir() if p.name != "state")
    assert left == [], f"files written outside the database: {left}"
    assert {p.name for p in (target.state / "db").iterdir()} <= {"finops.duckdb", "finops.duckdb.tmp", "finops.duckdb.wal"}


@pytest.mark.parametrize("case_id", _ids())
def test_each_reproduction_is_a_400_naming_the_construct(target: Target, case_id: str) -> None:
    stmt, construct = _case(target, case_id)
    answer = target.post({"stmt": stmt})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == 4000 and construct in error["message"], error
    assert error["message"].startswith(("UnsupportedFeatureException[", "SQLParseException[")), error
    assert b"root:" not in answer.content and b"PATH=" not in answer.content
    _assert_nothing_written(target)


@pytest.mark.parametrize("case_id", ["read-csv-passwd", "attach", "set-threads", "insert-select", "duckdb-settings"])
def test_the_crate_client_sees_a_400_database_error(target: Target, case_id: str) -> None:
    stmt, construct = _case(target, case_id)
    db = target.database()
    try:
        with pytest.raises(DatabaseError) as caught:
            db.execute(stmt)
    finally:
        db.close()
    assert caught.value.status == 400 and construct in caught.value.message


def test_attach_then_create_table_in_it_writes_no_file(target: Target) -> None:
    attach, _ = _case(target, "attach")
    assert target.post({"stmt": attach}).status_code == 400
    answer = target.post({"stmt": "CREATE TABLE x.t AS SELECT 1 AS a"})
    assert 400 <= answer.status_code < 500 and answer.json()["error"]["message"], answer.text
    _assert_nothing_written(target)


def test_refused_in_bulk_args_and_in_a_transaction_as_a_whole(target: Target) -> None:
    bulk = target.post({"stmt": "INSERT INTO t (name) SELECT content FROM read_text(?)", "bulk_args": [["/etc/hostname"]] * 3})
    assert bulk.status_code == 400 and "read_text()" in bulk.json()["error"]["message"], bulk.text
    before = target.post({"stmt": "SELECT count(*) FROM t"}).json()["rows"]
    atomic = target.post({"stmts": [{"stmt": "DELETE FROM t", "args": []},
                                    {"stmt": "SELECT * FROM read_csv('/etc/passwd')", "args": []}]})
    assert atomic.status_code == 400 and "read_csv()" in atomic.json()["error"]["message"], atomic.text
    assert "rolled back" in atomic.json()["error"]["message"]
    assert target.post({"stmt": "SELECT count(*) FROM t"}).json()["rows"] == before
    conflict = target.post({"stmt": "INSERT INTO t (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                                    "name = (SELECT content FROM read_text('/etc/hostname'))", "bulk_args": [["a", 2]]})
    assert conflict.status_code == 400 and "read_text()" in conflict.json()["error"]["message"], conflict.text


# ------------------------------------------------------------------ the engine is closed by itself

CLOSED = {
    "enable_external_access": ("false", "true"),
    "lock_configuration": ("true", "false"),
    "autoinstall_known_extensions": ("false", "true"),
    "autoload_known_extensions": ("false", "true"),
    "allow_community_extensions": ("false", "true"),
    "python_enable_replacements": ("false", "true"),
    "threads": (str(engine_module.THREADS), "8"),
    "memory_limit": ("366.2 MiB", "'10GB'"),  # 384MB
}


def test_the_settings_we_set_are_in_force(doorless: Target) -> None:
    names = ", ".join(f"'{n}'" for n in [*CLOSED, "temp_directory"])
    rows = doorless.post({"stmt": f"SELECT name, value FROM duckdb_settings() WHERE name IN ({names})"}).json()["rows"]
    got = dict(rows)
    assert {n: got[n] for n in CLOSED} == {n: v[0] for n, v in CLOSED.items()}
    assert got["temp_directory"] == f"{doorless.db_file}.tmp"
    in_memory = Engine(front_door=False)
    try:
        limit = in_memory.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").rows
    finally:
        in_memory.close()
    assert limit == [["953.6 MiB", ""]]  # 1GB, and nowhere to spill


@pytest.mark.parametrize("name", list(CLOSED))
def test_no_setting_can_be_changed_at_the_door_or_behind_it(target: Target, doorless: Target, name: str) -> None:
    stmt = f"SET {name} = {CLOSED[name][1]}"
    door = target.post({"stmt": stmt})
    assert door.status_code == 400 and f"SET {name}" in door.json()["error"]["message"], door.text
    behind = doorless.post({"stmt": stmt})
    assert behind.status_code == 400 and "locked" in behind.json()["error"]["message"], behind.text
    assert doorless.post({"stmt": f"RESET {name}"}).status_code == 400


# Not read-blob-db-file: a closed DuckDB still reads its own database file; only the door refuses that.
@pytest.mark.parametrize("case_id", ["read-csv-passwd", "read-text-environ", "glob-state-dir",
                                     "attach", "export-database", "install", "load", "file-as-table", "file-in-from-list",
                                     "insert-select-file", "copy-to"])
def test_behind_the_door_duckdb_refuses_files_and_code_as_4xx(doorless: Target, case_id: str) -> None:
    stmt, _ = _case(doorless, case_id)
    answer = doorless.post({"stmt": stmt})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["message"], answer.text
    assert b"root:" not in answer.content and b"PATH=" not in answer.content
    _assert_nothing_written(doorless)


def test_a_file_database_still_spills_to_its_tmp_directory(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "small.duckdb", memory_limit="64MB", front_door=False)
    try:
        rows = engine.execute("SELECT count(*) FROM (SELECT md5(range::VARCHAR) AS h FROM range(3000000) ORDER BY h)").rows
        spilled = (tmp_path / "small.duckdb.tmp").is_dir()  # DuckDB creates it when it spills, removes it on close
    finally:
        engine.close()
    assert rows == [[3_000_000]] and spilled


def test_our_own_paths_work_on_the_closed_engine(target: Target) -> None:
    handle = target.engine.register_payload(pa.table({"name": ["p"], "n": [2.5], "team": ["x"]}))
    try:
        db = target.database()
        try:
            db.execute(f"INSERT INTO t (name, n) SELECT name, n FROM finops_payload('{handle}')")
            db.executemany("INSERT INTO t (name, region) VALUES (?, ?)", [["q", "eu"]])  # a new column
            cols = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
                              "AND table_schema = 'doc' ORDER BY ordinal_position").rows
            rows = db.execute("SELECT name, n, region FROM t WHERE name IN ('p', 'q') ORDER BY name").rows
            db.execute("REFRESH TABLE t")
        finally:
            db.close()
    finally:
        target.engine.release_payload(handle)
    assert [c[0] for c in cols] == ["name", "n", "region"]
    assert rows == [["p", 2.5, None], ["q", None, "eu"]]


def test_no_caller_names_another_uploads_payload_view(target: Target) -> None:
    """The handle is the only way to a payload: its view name, however written, is refused."""
    handle = target.engine.register_payload(pa.table({"name": ["secret"], "n": [1.0]}))
    view = engine_module.payload_view(handle)
    try:
        for stmt in (f"SELECT * FROM {view}", f'SELECT * FROM "{view}"', f'SELECT * FROM "{view.upper()}"',
                     f"SELECT * FROM '{view}'", f"INSERT INTO t (name) SELECT name FROM {view}",
                     f"ALTER TABLE {view} RENAME TO pp", f"DROP TABLE {view}",
                     f"SELECT * FROM t WHERE name IN (SELECT name FROM temp.main.\"{view}\")"):
            answer = target.post({"stmt": stmt})
            assert answer.status_code == 400, (stmt, answer.text)
            assert "reserved name finops_payload_" in answer.json()["error"]["message"], (stmt, answer.text)
            assert b"secret" not in answer.content
        rows = target.post({"stmt": f"SELECT name FROM finops_payload('{handle}')"}).json()["rows"]
    finally:
        target.engine.release_payload(handle)
    assert rows == [["secret"]]  # the owner's handle still reads it; the view is still registered


def test_the_catalogue_views_survive_a_rename_attempt(target: Target) -> None:
    assert target.post({"stmt": "ALTER TABLE finops_information_schema_columns RENAME TO zz"}).status_code == 400
    cols = target.post({"stmt": "SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
                                "ORDER BY ordinal_position"}).json()["rows"]
    assert cols[:2] == [["name"], ["n"]]


RUNAWAY = ["SELECT count(*) FROM range(10000000000000)",
           "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"]


@pytest.mark.parametrize("stmt", RUNAWAY, ids=["range", "recursive"])
def test_a_runaway_statement_is_cancelled_at_the_limit_and_the_engine_keeps_answering(stmt: str) -> None:
    engine = Engine(statement_timeout=0.5)
    queued: dict[str, Any] = {}
    try:
        with serve(engine, {USER: PASSWORD}) as url:
            def post(body: dict[str, Any]) -> httpx.Response:
                return httpx.post(f"{url}/_sql", content=orjson.dumps(body), auth=(USER, PASSWORD), timeout=30)

            def behind() -> None:  # another caller, queued behind the runaway statement
                time.sleep(0.1)
                queued["answer"] = post({"stmt": "SELECT 2"})

            other = threading.Thread(target=behind)
            other.start()
            started = time.monotonic()
            answer = post({"stmt": stmt})
            took = time.monotonic() - started
            other.join(30)
            after = post({"stmt": "SELECT 1"})
            db = Database(url, USER, PASSWORD)
            try:
                with pytest.raises(DatabaseError) as caught:
                    db.execute(stmt)
            finally:
                db.close()
    finally:
        engine.close()
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("application/json"), answer.text
    error = answer.json()["error"]
    assert error["code"] == 4000 and "statement time limit of 0.5 s" in error["message"], error
    assert 0.4 < took < 10
    assert queued["answer"].status_code == 200 and queued["answer"].json()["rows"] == [[2]]
    assert after.status_code == 200 and after.json()["rows"] == [[1]]
    assert caught.value.status == 400 and "statement time limit" in caught.value.message


def test_a_cancelled_statement_in_a_transaction_rolls_it_back() -> None:
    engine = Engine(statement_timeout=0.5)
    try:
        engine.execute("CREATE TABLE t (a INT)")
        with pytest.raises(engine_module.SqlError) as caught:
            engine.run_transaction([("INSERT INTO t (a) VALUES (1)", None), (RUNAWAY[0], None)])
        rows = engine.execute("SELECT count(*) FROM t").rows
    finally:
        engine.close()
    assert "statement time limit" in caught.value.message and "rolled back" in caught.value.message
    assert rows == [[0]]


def test_the_default_limit_does_not_cut_a_normal_statement() -> None:
    assert engine_module.STATEMENT_TIMEOUT_S >= 60
    engine = Engine(statement_timeout=5)
    try:
        rows = engine.execute("SELECT count(*) FROM range(20000000)").rows
    finally:
        engine.close()
    assert rows == [[20_000_000]]


# ------------------------------------------------------------------ nested values come back as JSON

NESTED = [
    ("blob-in-list", "SELECT [blob 'x', NULL] AS v", [["78", None]]),
    ("blob-in-struct", "SELECT {'a': 'x'::BLOB} AS v", [{"a": "78"}]),
    ("blob-in-map-in-list", "SELECT [MAP {'k': [blob 'y']}] AS v", [[{"k": ["79"]}]]),
    ("number-keys", "SELECT MAP {1: 'a'} AS v", [{"1": "a"}]),
    ("decimal-in-list", "SELECT [1.25::DECIMAL(10, 2)] AS v", [[1.25]]),
    ("timestamp-in-list", "SELECT [TIMESTAMP '2024-01-01 00:00:00'] AS v", [[1704067200000]]),
    ("infinity-in-list", "SELECT ['infinity'::TIMESTAMP] AS v", [[9223372036854775]]),
    ("date-in-struct", "SELECT {'d': DATE '1970-01-02'} AS v", [{"d": 86400000}]),
    ("interval-in-list", "SELECT [INTERVAL 1 DAY] AS v", [["1 day"]]),
    ("hugeint", "SELECT 170141183460469231731687303715884105727::HUGEINT AS v", ["170141183460469231731687303715884105727"]),
    ("blob", "SELECT 'x'::BLOB AS v", ["78"]),
]


@pytest.mark.parametrize(("stmt", "expected"), [n[1:] for n in NESTED], ids=[n[0] for n in NESTED])
def test_nested_values_come_back_as_json(target: Target, stmt: str, expected: list[Any]) -> None:
    answer = target.post({"stmt": stmt})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json"), answer.text
    value = answer.json()["rows"][0][0]
    if expected == [["1 day"]]:  # the interval's text is pyarrow's; only that it is text matters
        assert isinstance(value, list) and isinstance(value[0], str)
    else:
        assert [value] == expected


def test_an_engine_failure_is_cratedb_json_never_html(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "gone.duckdb")
    engine.close()  # every statement now fails inside DuckDB
    with serve(engine, {USER: PASSWORD}) as url:
        answer = httpx.post(f"{url}/_sql", content=orjson.dumps({"stmt": "SELECT 1"}), auth=(USER, PASSWORD), timeout=30)
    assert answer.status_code == 500 and answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == 5000 and error["message"].startswith("SQLActionException[")
    assert "Traceback" not in answer.text and "File \"" not in answer.text
