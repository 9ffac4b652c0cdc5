"""CrateDB SQL is translated to DuckDB in one module, and CrateDB-only constructs are refused by name.

Cases: each translation (types, table options, no-ops, doc. schema, information_schema, tags['k'],
CURRENT_TIMESTAMP, casts, ON CONFLICT, LIMIT/OFFSET, identifier case); each refusal (code 4000,
HTTP 400, message naming the construct); placeholder INSERTs are recognised for the columnar path.
"""

from __future__ import annotations

import pytest

from functions.storage.dialect import NOOP, SqlError, parse_insert, translate

TRANSLATIONS = [
    ("string-type", "CREATE TABLE t (a STRING, b TEXT)", "create table t (a varchar, b varchar)"),
    ("object-dynamic", "CREATE TABLE t (tags OBJECT(DYNAMIC))", "create table t (tags map (varchar, varchar))"),
    ("object-plain", "CREATE TABLE t (tags OBJECT)", "create table t (tags map (varchar, varchar))"),
    ("timestamp-tz", "CREATE TABLE t (ts TIMESTAMP WITH TIME ZONE)", "create table t (ts timestamp)"),
    ("with-options", "CREATE TABLE t (a STRING) WITH (column_policy = 'dynamic', number_of_replicas = 0)",
     "create table t (a varchar)"),
    ("clustered", "CREATE TABLE t (a STRING) CLUSTERED BY (a) INTO 4 SHARDS", "create table t (a varchar)"),
    ("partitioned", "CREATE TABLE t (a STRING) PARTITIONED BY (a)", "create table t (a varchar)"),
    ("doc-schema", "SELECT * FROM doc.costs", "select * from costs"),
    ("doc-quoted", 'SELECT * FROM "doc"."costs"', 'select * from "costs"'),
    ("information-schema", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'doc'",
     "select table_name from finops_information_schema_tables where table_schema = 'doc'"),
    ("tags-subscript", "SELECT tags['team'] FROM t", "select tags['team'] from t"),
    ("quoted-subscript", """SELECT "tags"['team'] FROM t""", """select "tags"['team'] from t"""),
    ("current-timestamp", "SELECT CURRENT_TIMESTAMP", "select CAST (CURRENT_TIMESTAMP AS TIMESTAMP)"),
    ("now", "SELECT now()", "select CAST (CURRENT_TIMESTAMP AS TIMESTAMP)"),
    ("cast-string", "SELECT x::STRING FROM t", "select x::varchar from t"),
    ("date-trunc", "SELECT date_trunc('month', ts) FROM t", "select date_trunc ('month', ts) from t"),
    ("on-conflict", "INSERT INTO t (a, b) SELECT a, b FROM s ON CONFLICT (a) DO UPDATE SET b = excluded.b",
     "insert into t (a, b) select a, b from s on conflict (a) do update set b = excluded.b"),
    ("limit-offset", "SELECT a FROM t LIMIT 10 OFFSET 5", "select a from t limit 10 offset 5"),
    ("upper-identifiers", "SELECT BilledCost FROM Costs", "select billedcost from costs"),
    ("string-literal-kept", "SELECT 'STRING doc.x' FROM t", "select 'STRING doc.x' from t"),
    ("trailing-semicolon", "SELECT 1;", "select 1"),
]


@pytest.mark.parametrize(("stmt", "expected"), [t[1:] for t in TRANSLATIONS], ids=[t[0] for t in TRANSLATIONS])
def test_translation(stmt: str, expected: str) -> None:
    assert translate(stmt) == expected


@pytest.mark.parametrize("stmt", ["REFRESH TABLE t", "OPTIMIZE TABLE t", "BEGIN", "COMMIT"],
                         ids=["refresh", "optimize", "begin", "commit"])
def test_noops(stmt: str) -> None:
    assert translate(stmt) == NOOP


REFUSALS = [
    ("match", "SELECT * FROM t WHERE MATCH(a, 'x')", "MATCH()"),
    ("copy-from", "COPY t FROM 'file:///x.json'", "COPY FROM/TO"),
    ("copy-to", "COPY t TO DIRECTORY '/tmp'", "COPY FROM/TO"),
    ("blob-table", "CREATE BLOB TABLE b", "CREATE BLOB TABLE"),
    ("repository", "CREATE REPOSITORY r TYPE fs", "CREATE REPOSITORY"),
    ("snapshot", "CREATE SNAPSHOT r.s ALL", "CREATE SNAPSHOT"),
    ("kill", "KILL ALL", "KILL"),
    ("alter-cluster", "ALTER CLUSTER REROUTE RETRY FAILED", "ALTER CLUSTER"),
    ("set-global", "SET GLOBAL stats.enabled = false", "SET GLOBAL"),
    ("id-column", "SELECT _id FROM t", "_id"),
    ("score-column", "SELECT _score FROM t", "_score"),
    ("analyzer", "CREATE ANALYZER a (TOKENIZER whitespace)", "CREATE ANALYZER"),
    ("sys-schema", "SELECT * FROM sys.nodes", "sys schema"),
    ("typed-object", "CREATE TABLE t (o OBJECT AS (a INT))", "OBJECT ... AS"),
    ("two-statements", "SELECT 1; SELECT 2", "more than one statement"),
]


@pytest.mark.parametrize(("stmt", "construct"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusal_names_the_construct(stmt: str, construct: str) -> None:
    with pytest.raises(SqlError) as caught:
        translate(stmt)
    assert caught.value.code == 4000 and caught.value.status == 400
    assert construct in caught.value.message


@pytest.mark.parametrize(
    ("stmt", "columns", "params", "conflict"),
    [
        ("INSERT INTO doc.T (A, b) VALUES (?, ?)", ("a", "b"), ((0, 1),), ()),
        ("INSERT INTO t (a, b) VALUES ($2, $1)", ("a", "b"), ((1, 0),), ()),
        ("INSERT INTO t (a) VALUES (?), (?)", ("a",), ((0,), (1,)), ()),
        ("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = excluded.b", ("a", "b"),
         ((0, 1),), ("a",)),
    ],
    ids=["plain", "numbered", "multi-row", "on-conflict"],
)
def test_placeholder_inserts_are_recognised(
    stmt: str, columns: tuple[str, ...], params: tuple[tuple[int, ...], ...], conflict: tuple[str, ...]
) -> None:
    ins = parse_insert(stmt)
    assert ins is not None and ins.columns == columns and ins.params == params
    assert ins.conflict_cols == conflict


@pytest.mark.parametrize("stmt", ["INSERT INTO t (a) VALUES ('x')", "INSERT INTO t (a) SELECT a FROM s",
                                  "SELECT 1"], ids=["literal", "insert-select", "select"])
def test_other_statements_are_not_columnar_inserts(stmt: str) -> None:
    assert parse_insert(stmt) is None
