"""Bulk SQL insert of FOCUS-shaped rows: Database.executemany through the embedded /_sql vs DuckDB+Arrow.

Ours = `Database.executemany` (crate client -> HTTP on 127.0.0.1 -> /_sql bulk_args -> one columnar
insert per chunk of 20k rows); baseline = DuckDB `INSERT ... SELECT` from a registered Arrow table
of the same rows (the fastest in-process path, ≈92k rows/s on 2 cores). Both target an all-STRING
table of the 45 FOCUS + x_ columns. ratio = baseline_s / ours_s. Writes .bench/bulk_sql.json; the
handler's benchmark owns the >= 0.5 bar.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
from embedded_sql_server import serve
from focus_data import COLUMNS, focus_rows

from functions.clients.db import Database
from functions.storage.engine import Engine

ROWS = int(os.environ.get("FINOPS_BENCH_ROWS", "100000"))
CHUNK = 20_000


def test_bulk_insert_through_embedded_sql() -> None:
    names = [c.lower() for c in COLUMNS]
    rows = [[row[c] for c in COLUMNS] for row in focus_rows(ROWS)]
    ddl = "CREATE TABLE focus (" + ", ".join(f"{n} STRING" for n in names) + ")"
    insert = f"INSERT INTO focus ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    engine = Engine()
    with serve(engine) as url:
        db = Database(url)
        db.execute(ddl)
        started = time.perf_counter()
        for start in range(0, ROWS, CHUNK):
            counts = db.executemany(insert, rows[start : start + CHUNK])
            assert counts.count(1) == len(counts)
        ours = time.perf_counter() - started
        assert db.execute("SELECT count(*) FROM focus").rows == [[ROWS]]
        db.close()
    engine.close()

    con = duckdb.connect()
    con.execute(ddl.replace("STRING", "VARCHAR"))
    started = time.perf_counter()
    table = pa.Table.from_arrays([pa.array(col, pa.string()) for col in zip(*rows, strict=True)], names=names)
    con.register("src", table)
    con.execute("INSERT INTO focus SELECT * FROM src").fetchall()
    baseline = time.perf_counter() - started
    con.close()

    result = {"rows": ROWS, "ours_s": round(ours, 3), "baseline_s": round(baseline, 3),
              "ratio": round(baseline / ours, 3), "ours_rows_per_s": round(ROWS / ours)}
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "bulk_sql.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
