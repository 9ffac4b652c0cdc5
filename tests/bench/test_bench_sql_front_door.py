"""The `/_sql` front door's added cost on the bulk path, against the same run without it.

Set-up (not timed): ROWS FOCUS rows exactly as a scraper uploads them (the exporter's codecs and
`samples_to_records`, via test_bench_bulk_upload's `_records`), cut into parts of PART_ROWS rows
(the scraper's default part size). Two engines on DuckDB files, closed alike at connect, one with
the front door (`Engine(...)`, as the handler builds it) and one without (`front_door=False`), each
served on 127.0.0.1 by the embedded SQL listener; the real crate client (functions.clients.db)
talks to each as the handler's upload code does.

Cases:
- arrow (asserted): the handler's /upload logic (functions.stages.dbhandler.upload.handle, the
  Arrow path by reference: staging INSERT ... SELECT FROM finops_payload('<handle>'), ledger,
  rejects, part markers, commit) for every part of a run into a fresh table, the door's verdict
  cache emptied before each run (the worst case: nothing cached). ours = with the door, baseline =
  without, alternated, best of RUNS each. ratio = baseline_s / ours_s must be >= 0.95 (the door
  costs under 5 %).
- bulk_args (reported): Database.executemany of BULK_ROWS 45-column rows (the placeholder INSERT
  fast path, what CrateDB mode and the ledger send), same comparison.
- million_rows (asserted): every caller statement of one arrow run is recorded (Engine.on_statement)
  and only the door's check is timed again: cold (no verdict cached before each), as in a run (an
  empty cache at its start: a first run into a new table) and cached (the next cycle). The per-run
  figure scaled to 1,000,000 rows (linearly, so the run's fixed statements too: an overestimate) is
  compared with the 1M-row run's wall time (.bench/million_rows.json when it holds a 1M-row run,
  else this run's rows/s, which leaves out exporter and scraper: the stricter bar): ratio =
  wall / (wall + front-door time) must be >= 0.95.
Env: FINOPS_BENCH_ROWS (default 100,000), FINOPS_BENCH_PART_ROWS (default 50,000),
FINOPS_BENCH_FRONT_DOOR_RUNS (default 3), FINOPS_BENCH_BULK_ROWS (default 20,000).
Writes .bench/sql_front_door.json and prints it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from embedded_sql_server import serve
from focus_data import COLUMNS, focus_rows
from test_bench_bulk_upload import _records

from functions.clients.db import Database
from functions.stages.dbhandler import upload
from functions.storage import sql_policy
from functions.storage.dialect import NOOP, parse_insert, payload_view, translate
from functions.storage.engine import Engine

ROWS = int(os.environ.get("FINOPS_BENCH_ROWS", "100000"))
PART_ROWS = int(os.environ.get("FINOPS_BENCH_PART_ROWS", "50000"))
RUNS = int(os.environ.get("FINOPS_BENCH_FRONT_DOOR_RUNS", "3"))
BULK_ROWS = int(os.environ.get("FINOPS_BENCH_BULK_ROWS", "20000"))
MILLION = 1_000_000
REPO = Path(__file__).resolve().parents[2]
SOURCE = "ExporterScraperConfig/finops/bench-door"
USERS = {"finops": "bench"}


@contextmanager
def _served(path: Path, front_door: bool) -> Iterator[tuple[Engine, Database]]:
    engine = Engine(path, front_door=front_door)
    try:
        with serve(engine, USERS) as url:
            db = Database(url, "finops", "bench")
            try:
                yield engine, db
            finally:
                db.close()
    finally:
        engine.close()


def _arrow_run(engine: Engine, db: Database, parts: list[pa.Table], table: str) -> float:
    """Every part through the handler's upload logic (by reference), the last one final; seconds."""
    _clear()  # the worst case: no verdict cached
    started = time.perf_counter()
    for n, part in enumerate(parts):
        request = upload.UploadRequest(table=table, type="cost", source=SOURCE, run=f"run-{table}", part=n,
                                       final=n == len(parts) - 1)
        result = upload.handle(request, part, [], db, payloads=engine)
        assert not result.records_rejected, result.body()
    elapsed = time.perf_counter() - started
    assert result.committed
    return elapsed


def _bulk_run(db: Database, rows: list[list[Any]], table: str) -> float:
    names = [c.lower() for c in COLUMNS]
    db.execute(f"CREATE TABLE {table} (" + ", ".join(f"{n} STRING" for n in names) + ")")
    insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    _clear()
    started = time.perf_counter()
    for start in range(0, len(rows), 5000):
        assert db.executemany(insert, rows[start : start + 5000]).count(1) == len(rows[start : start + 5000])
    return time.perf_counter() - started


def _classify(stmts: list[str], mode: str) -> float:
    """Seconds the front door adds to these statements (its check; translating them is done either way).

    mode: "cold" (no verdict cached before each), "run" (an empty cache at the start, as a run on a
    new table), "warm" (every verdict cached, as the next cycle of the same config).
    """
    if mode == "warm":
        _classify(stmts, "run")
    elif mode == "run":
        _clear()
    ins = [parse_insert(stmt) for stmt in stmts]
    translated = [(stmt, None if i is not None else translate(stmt, payload_view), i) for stmt, i in zip(stmts, ins, strict=True)]
    total = 0.0
    for stmt, sql, placeholder in translated:
        if mode == "cold":
            _clear()
        started = time.perf_counter()
        if placeholder is not None:  # the engine's placeholder INSERT: only an ON CONFLICT clause is read
            if placeholder.on_conflict:
                sql_policy.admit_plain(stmt)
        elif sql == NOOP:
            sql_policy.check_noop(stmt)
        else:
            sql_policy.check(sql_policy.policy_text(str(sql)))
        total += time.perf_counter() - started
    return total


def _clear() -> None:
    sql_policy._verdict.cache_clear()
    sql_policy._plain_verdict.cache_clear()


def _million_rows_wall(rows_per_s: float) -> tuple[float, str]:
    measured = REPO / ".bench" / "million_rows.json"
    if measured.exists():
        found = json.loads(measured.read_text())
        if found.get("rows") == MILLION and found.get("wall_s"):
            return float(found["wall_s"]), ".bench/million_rows.json"
    return MILLION / rows_per_s, "extrapolated from this run's arrow rows/s (no .bench/million_rows.json)"


def test_the_front_door_costs_under_five_percent(tmp_path: Path) -> None:
    table = _records(ROWS)
    parts = [table.slice(i, PART_ROWS) for i in range(0, ROWS, PART_ROWS)]
    bulk_rows = [[row[c] for c in COLUMNS] for row in focus_rows(BULK_ROWS)]
    recorded: list[str] = []
    with _served(tmp_path / "door.duckdb", True) as (door, door_db), \
            _served(tmp_path / "open.duckdb", False) as (bare, bare_db):
        _arrow_run(door, door_db, parts[:1], "warm_up")  # warm instances, as in a running cycle
        _arrow_run(bare, bare_db, parts[:1], "warm_up")
        ours, baseline = [], []
        for n in range(RUNS):  # alternated, so both sides see the same noise
            door.on_statement = recorded.append if n == 0 else None
            ours.append(_arrow_run(door, door_db, parts, f"focus_{n}"))
            baseline.append(_arrow_run(bare, bare_db, parts, f"focus_{n}"))
        door.on_statement = None
        bulk_ours = min(_bulk_run(door_db, bulk_rows, f"bulk_{n}") for n in range(2))
        bulk_base = min(_bulk_run(bare_db, bulk_rows, f"bulk_{n}") for n in range(2))
        counts = [db.execute("SELECT count(*) FROM focus_0").rows[0][0] for db in (door_db, bare_db)]
    assert counts == [ROWS, ROWS]

    cold, per_run, warm = (_classify(recorded, mode) for mode in ("cold", "run", "warm"))
    ours_s, base_s = min(ours), min(baseline)
    rows_per_s = ROWS / ours_s
    wall_1m, wall_from = _million_rows_wall(rows_per_s)
    scale = MILLION / ROWS
    added_1m = per_run * scale
    result = {
        "rows": ROWS, "part_rows": PART_ROWS, "runs": RUNS,
        "arrow": {"ours_s": round(ours_s, 3), "baseline_s": round(base_s, 3), "ratio": round(base_s / ours_s, 3),
                  "ours_rows_per_s": round(rows_per_s), "all_ours_s": [round(x, 3) for x in ours],
                  "all_baseline_s": [round(x, 3) for x in baseline]},
        "bulk_args": {"rows": BULK_ROWS, "ours_s": round(bulk_ours, 3), "baseline_s": round(bulk_base, 3),
                      "ratio": round(bulk_base / bulk_ours, 3)},
        "statements_per_run": len(recorded), "distinct_statements_per_run": len(set(recorded)),
        "classify_cold_ms_per_statement": round(1000 * cold / len(recorded), 3),
        "classify_warm_ms_per_statement": round(1000 * warm / len(recorded), 4),
        "front_door_ms_per_run": round(1000 * per_run, 2),
        "front_door_ms_per_run_cached": round(1000 * warm, 3),
        "million_rows": {"statements": math.ceil(len(recorded) * scale), "front_door_s": round(added_1m, 4),
                         "wall_s": round(wall_1m, 2), "wall_from": wall_from,
                         "ratio": round(wall_1m / (wall_1m + added_1m), 4)},
        "baseline": "the same run on an engine without the front door (Engine(front_door=False)), alternated",
    }
    result["ratio"] = result["arrow"]["ratio"]
    (REPO / ".bench").mkdir(exist_ok=True)
    (REPO / ".bench" / "sql_front_door.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert result["ratio"] >= 0.95, "the front door costs more than 5 % on the Arrow bulk path"
    assert result["million_rows"]["ratio"] >= 0.95, "the front door costs more than 5 % of a 1M-row run"
