"""One million FOCUS rows API -> database through the real local stack, timed, with each function's peak memory.

Set-up (not timed): `DemoCostApi` serves a generated FOCUS CSV of ROWS rows behind a bearer token; the
endpoint Secret, the DatabaseConfig + password Secret and an ExporterScraperConfig are applied to a
fresh state directory; the local stack (broker + exporter, scraper, dbhandler processes, embedded
database) is started. Timed: `finops run ExporterScraperConfig/finops/bench-cost` (synchronous: the
tick goes through the broker and the whole chain, export -> snapshot -> scrape -> upload parts ->
commit). Then: peak RSS (VmHWM) of each function process from /proc/<pid>/status, pids from
<state>/stack.json; row count and SUM(billedcost) of the table vs the CSV.

Asserts: wall < 60 s and each peak RSS < 1 GiB (targets for 1,000,000 rows on 2 cores), same rows
and BilledCost sum. FINOPS_BENCH_MILLION_ROWS scales it down for quick runs (the wall-time bar scales
with it, plus 3 s of fixed start-up below a million). Writes .bench/million_rows.json.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from functions import cli
from functions.clients.db import connect
from functions.demo.demo_apis import DemoCostApi
from functions.local.crstore import CrStore
from functions.local.supervisor import Stack, read_stack

ROWS = int(os.environ.get("FINOPS_BENCH_MILLION_ROWS", "1000000"))
WALL_LIMIT_S = 60.0 * ROWS / 1_000_000 + (0.0 if ROWS >= 1_000_000 else 3.0)
RSS_LIMIT = 1 << 30
REPO = Path(__file__).resolve().parents[2]
NS, TABLE = "finops", "bench_cost"


def _objects(api: DemoCostApi) -> list[dict[str, Any]]:
    def meta(name: str) -> dict[str, str]:
        return {"name": name, "namespace": NS}

    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta("bench-cost-api"),
         "stringData": {"server-url": api.url, "token": api.token}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta("finops-db-password"),
         "stringData": {"password": "bench-password"}},
        {"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig", "metadata": meta("finops-db"),
         "spec": {"username": "finops", "passwordSecretRef": {"name": "finops-db-password", "namespace": NS, "key": "password"}}},
        {"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig", "metadata": meta("bench-cost"),
         "spec": {"exporterConfig": {"api": {"path": "/focus/export.csv", "verb": "GET", "headers": ["Accept: text/csv"],
                                             "endpointRef": {"name": "bench-cost-api", "namespace": NS}},
                                     "metricType": "cost", "pollingInterval": "1h"},
                  "scraperConfig": {"tableName": TABLE, "pollingInterval": "1h",
                                    "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}}}},
    ]


def _source_totals(path: Path) -> tuple[int, Decimal]:
    rows, total = 0, Decimal(0)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows += 1
            total += Decimal(row["BilledCost"] or "0")
    return rows, total


def _tree(pid: int) -> list[int]:
    """pid and its descendants (functions-framework serves from a gunicorn worker, a child process)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += _tree(int(child))
    return out


def _peak_rss(pid: int) -> int:
    """The largest VmHWM (peak resident set) among the function's processes."""
    peaks = []
    for p in _tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) * 1024)
    assert peaks, f"no VmHWM for pid {pid}"
    return max(peaks)


def test_a_million_rows_reach_the_database_within_a_minute(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DemoCostApi(ROWS, data_dir=tmp_path / "api").start() as api:
        source_rows, source_sum = _source_totals(api.csv_path)
        CrStore(state).apply(_objects(api))
        stack = Stack(state, REPO / "knative" / "base", REPO / "eventsources")
        try:
            stack.start()
            if stack.scheduler is not None:
                stack.scheduler.stop()  # only our explicit `finops run` may fire
            pids = {name: svc["pid"] for name, svc in read_stack(state)["services"].items()}
            out = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(out):
                rc = cli.main(["run", "--state", str(state), f"ExporterScraperConfig/{NS}/bench-cost"])
            wall = time.perf_counter() - started
            assert rc == 0, out.getvalue()
            peaks = {name: _peak_rss(pid) for name, pid in pids.items() if pid}
            info = read_stack(state)["db"]
            db = connect(info["url"], info["user"], info["password"])
            try:
                (count, total), = db.execute(f"SELECT count(*), SUM(billedcost) FROM {TABLE}").rows
            finally:
                db.close()
        finally:
            stack.stop()
    result = {"rows": ROWS, "wall_s": round(wall, 2), "rows_per_s": round(ROWS / wall),
              "wall_limit_s": WALL_LIMIT_S, "peak_rss_mib": {n: round(v / 2**20, 1) for n, v in peaks.items()},
              "stored_rows": count, "stored_billedcost": total, "source_billedcost": str(source_sum)}
    (REPO / ".bench").mkdir(exist_ok=True)
    (REPO / ".bench" / "million_rows.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert count == source_rows == ROWS
    assert abs(Decimal(repr(total)) - source_sum) < Decimal("0.01") * max(1, ROWS // 100_000)
    for name in ("exporter", "scraper", "dbhandler"):
        assert peaks[name] < RSS_LIMIT, f"{name} peaked at {peaks[name] / 2**20:.0f} MiB"
    assert wall < WALL_LIMIT_S
