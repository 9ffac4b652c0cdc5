"""The protocol checks of the embedded engine, run against a real CrateDB when one is reachable.

Cases: select with args, bulk insert with a bad row (-2), timestamps as epoch ms, objects and
tags['k'] filter/group by, unknown table -> 400, sequential run_atomically. Skipped (saying why)
unless FINOPS_TEST_CRATEDB_URL is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from functions.clients.db import Database, DatabaseError

pytestmark = pytest.mark.cratedb
URL = os.environ.get("FINOPS_TEST_CRATEDB_URL", "")


@pytest.fixture
def db() -> Iterator[tuple[Database, str]]:
    if not URL:
        pytest.skip("no CrateDB server here: set FINOPS_TEST_CRATEDB_URL=http://user:pass@host:4200 to run")
    parts = urlsplit(URL)
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 4200}"
    database = Database(base, parts.username, parts.password)
    table = f"finops_test_{uuid.uuid4().hex[:8]}"
    database.execute(f"CREATE TABLE {table} (name STRING, n DOUBLE, ts TIMESTAMP, tags OBJECT(DYNAMIC))"
                     " WITH (column_policy = 'dynamic')")
    yield database, table
    database.execute(f"DROP TABLE IF EXISTS {table}")
    database.close()


def test_protocol_matches_the_embedded_engine(db: tuple[Database, str]) -> None:
    database, table = db
    assert not database.embedded
    counts = database.executemany(
        f"INSERT INTO {table} (name, n, ts, tags) VALUES (?, ?, ?, ?)",
        [["a", 1, "2024-01-01T00:00:00Z", {"team": "x"}], ["b", "bad", 0, {}], ["c", 2, 1704067200000,
                                                                                  '{"team": "y"}']],
    )
    assert counts == [1, -2, 1]
    database.execute(f"REFRESH TABLE {table}")
    assert database.execute(f"SELECT ts FROM {table} WHERE name = ?", ["a"]).rows == [[1704067200000]]
    grouped = database.execute(f"SELECT tags['team'] AS team, sum(n) AS s FROM {table} "
                               "WHERE tags['team'] IS NOT NULL GROUP BY tags['team'] ORDER BY team")
    assert grouped.rows == [["x", 1.0], ["y", 2.0]]
    database.run_atomically([(f"DELETE FROM {table} WHERE name = ?", ["a"])])
    with pytest.raises(DatabaseError) as caught:
        database.execute("SELECT * FROM finops_no_such_table")
    assert caught.value.status == 400
