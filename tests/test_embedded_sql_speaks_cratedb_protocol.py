"""The embedded engine answers the real `crate` client like CrateDB does, over HTTP on 127.0.0.1.

Cases: banner flags the embedded server; select with args ($n and ?); insert with args;
bulk_args become per-row results (bad rows -2, good rows kept); dynamic columns are added on
insert; timestamps go in as ISO strings or epoch ms and come back as epoch ms (and compare with
epoch-ms args); objects go in as dicts or JSON text and come back as objects; tags['k'] works in
SELECT, WHERE and GROUP BY; errors keep CrateDB's codes and map to our exceptions (unknown table,
unknown column, syntax, refused construct); bad credentials -> Unauthorized; a refused port ->
Unavailable; run_atomically commits all or nothing; the Krateo cost/resource DDL runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import urllib3
from embedded_sql_server import serve

from functions.clients.db import Database, DatabaseError, connect
from functions.errors import Unauthorized, Unavailable
from functions.storage import tables
from functions.storage.engine import Engine

USERS = {"crate": "secret"}


@pytest.fixture
def server() -> Iterator[str]:
    engine = Engine()
    with serve(engine, USERS) as url:
        yield url
    engine.close()


@pytest.fixture
def db(server: str) -> Iterator[Database]:
    database = connect(server, "crate", "secret")
    database.execute("CREATE TABLE t (name STRING, n DOUBLE, ts TIMESTAMP, tags OBJECT(DYNAMIC))"
                     " WITH (column_policy = 'dynamic')")
    yield database
    database.close()


def test_banner_says_embedded(server: str) -> None:
    body = orjson.loads(urllib3.request("GET", server + "/", headers=urllib3.make_headers(
        basic_auth="crate:secret")).data)
    assert body["finops_embedded"] is True and body["version"]["number"]
    assert connect(server, "crate", "secret").embedded


@pytest.mark.parametrize("placeholder", ["?", "$1"], ids=["question-mark", "dollar"])
def test_select_with_args(db: Database, placeholder: str) -> None:
    db.execute("INSERT INTO t (name, n) VALUES (?, ?)", ["a", 1.5])
    db.execute("INSERT INTO t (name, n) VALUES (?, ?)", ["b", 2])
    result = db.execute(f"SELECT name, n FROM doc.t WHERE n > {placeholder} ORDER BY name", [1])
    assert result.cols == ["name", "n"]
    assert result.rows == [["a", 1.5], ["b", 2.0]] and result.rowcount == 2


def test_insert_reports_rowcount(db: Database) -> None:
    assert db.execute("INSERT INTO t (name) VALUES (?), (?)", ["a", "b"]).rowcount == 2
    assert db.execute("UPDATE t SET n = 1 WHERE name = ?", ["a"]).rowcount == 1
    assert db.execute("DELETE FROM t").rowcount == 2


def test_bulk_args_give_per_row_results(db: Database) -> None:
    counts = db.executemany(
        "INSERT INTO t (name, n, ts) VALUES (?, ?, ?)",
        [["a", 1, 0], ["b", "not a number", 0], ["c", "2.5", "bad time"], ["d", None, None]],
    )
    assert counts == [1, -2, -2, 1]
    assert db.execute("SELECT name FROM t ORDER BY name").rows == [["a"], ["d"]]


def test_unknown_columns_are_added_on_insert(db: Database) -> None:
    db.executemany("INSERT INTO t (name, team) VALUES (?, ?)", [["a", "x"], ["b", 7]])
    assert db.execute("SELECT team FROM t ORDER BY name").rows == [["x"], ["7"]]


@pytest.mark.parametrize(
    "value",
    ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01", 1704067200000, "1704067200000"],
    ids=["iso-z", "iso-offset", "date", "epoch-ms", "epoch-ms-text"],
)
def test_timestamps_in_any_form_come_back_as_epoch_ms(db: Database, value: object) -> None:
    db.execute("INSERT INTO t (name, ts) VALUES (?, ?)", ["a", value])
    assert db.execute("SELECT ts FROM t").rows == [[1704067200000]]
    assert db.execute("SELECT count(*) FROM t WHERE ts >= ?", [1704067200000]).rows == [[1]]
    assert db.execute("SELECT count(*) FROM t WHERE ts = ?", ["2024-01-01T00:00:00Z"]).rows == [[1]]


@pytest.mark.parametrize("tags", [{"team": "a"}, '{"team": "a"}'], ids=["dict", "json-text"])
def test_objects_round_trip(db: Database, tags: object) -> None:
    db.execute("INSERT INTO t (name, tags) VALUES (?, ?)", ["a", tags])
    assert db.execute("SELECT tags FROM t").rows == [[{"team": "a"}]]


def test_tags_subscript_filters_and_groups(db: Database) -> None:
    db.executemany(
        "INSERT INTO t (name, n, tags) VALUES (?, ?, ?)",
        [["a", 1, {"team": "x", "env": "p"}], ["b", 2, {"team": "x"}], ["c", 4, {"team": "y"}], ["d", 8, {}]],
    )
    grouped = db.execute(
        "SELECT tags['team'] AS team, sum(n) AS total FROM t WHERE tags['team'] IS NOT NULL "
        "GROUP BY tags['team'] ORDER BY team"
    )
    assert grouped.rows == [["x", 3.0], ["y", 4.0]]
    assert db.execute("""SELECT name FROM t WHERE "tags"['env'] = ?""", ["p"]).rows == [["a"]]


@pytest.mark.parametrize(
    ("stmt", "status", "text"),
    [
        ("SELECT * FROM nope", 400, "RelationUnknown"),
        ("SELECT nope FROM t", 400, "ColumnUnknownException"),
        ("SELEC 1", 400, "SQLParseException"),
        ("SELECT * FROM t WHERE MATCH(name, 'x')", 400, "MATCH()"),
        ("CREATE TABLE t (a STRING)", 400, "RelationAlreadyExists"),
    ],
    ids=["unknown-table", "unknown-column", "syntax", "refused", "exists"],
)
def test_sql_errors_keep_cratedb_messages(db: Database, stmt: str, status: int, text: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        db.execute(stmt)
    assert caught.value.status == status and text in caught.value.message


@pytest.mark.parametrize(("stmt", "code", "http"), [
    ("SELECT * FROM nope", 4041, 404), ("SELECT nope FROM t", 4043, 404), ("SELEC 1", 4000, 400),
    ("COPY t FROM 'x'", 4000, 400),
], ids=["relation-unknown", "column-unknown", "syntax", "refused"])
def test_error_codes_match_cratedb(db: Database, server: str, stmt: str, code: int, http: int) -> None:
    response = urllib3.request("POST", server + "/_sql", body=orjson.dumps({"stmt": stmt}),
                               headers=urllib3.make_headers(basic_auth="crate:secret"))
    assert response.status == http
    assert orjson.loads(response.data)["error"]["code"] == code


@pytest.mark.parametrize(("user", "password"), [("crate", "wrong"), ("nobody", "secret"), (None, None)],
                         ids=["bad-password", "unknown-user", "anonymous"])
def test_bad_credentials_are_unauthorized(server: str, user: str | None, password: str | None) -> None:
    with pytest.raises(Unauthorized):
        Database(server, user, password).execute("SELECT 1")


def test_refused_connection_is_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        Database("http://127.0.0.1:9", "crate", "secret", timeout=2).execute("SELECT 1")
    assert caught.value.retry_after == 5


def test_run_atomically_commits_all_or_nothing(db: Database) -> None:
    db.execute("INSERT INTO t (name) VALUES (?)", ["old"])
    db.run_atomically([("DELETE FROM t", None), ("INSERT INTO t (name) VALUES (?)", ["new"])])
    assert db.execute("SELECT name FROM t").rows == [["new"]]
    with pytest.raises(DatabaseError, match="rolled back"):
        db.run_atomically([("DELETE FROM t", None), ("INSERT INTO missing (name) VALUES (?)", ["x"])])
    assert db.execute("SELECT name FROM t").rows == [["new"]]


@pytest.mark.parametrize("metric_type", ["cost", "resource", "generic"])
def test_krateo_tables_are_created_and_found(db: Database, metric_type: tables.MetricType) -> None:
    db.execute(tables.table_ddl("MyTable", metric_type, ["region"]))
    db.execute(tables.staging_ddl("MyTable", metric_type, ["region"]))
    assert db.table_exists("mytable") and db.table_exists(tables.staging_table("mytable"))
    assert not db.table_exists("missing")
    cols = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                      "AND table_schema = 'doc' ORDER BY ordinal_position", ["mytable"])
    assert [r[0] for r in cols.rows] == list(tables.columns_for(metric_type, ["region"]))


def test_large_bulk_is_gzip_safe_and_complete(server: str) -> None:
    database = Database(server, "crate", "secret")
    database.execute("CREATE TABLE big (a STRING, b DOUBLE)")
    database._connection().client.compress = 1  # force gzip like a remote client would
    assert database.executemany("INSERT INTO big (a, b) VALUES (?, ?)", [["x" * 20, i] for i in range(5000)]) \
        == [1] * 5000
    assert database.execute("SELECT count(*), sum(b) FROM big").rows == [[5000, 12497500.0]]
