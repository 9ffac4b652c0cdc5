"""The database handler keeps answering under concurrency: it never waits on its own request pool.

Reproduced before the fix: 10 concurrent one-row `POST /upload` calls all took 60 s and most answered
503, because the handler's own SQL client called the handler's public `/_sql` and waited for a worker
thread of the pool its caller held. Now its SQL goes to a listener with threads of its own, notebook
runs to a second one. Every case runs the real handler under functions-framework (tests/dbhandler_server.py).

Cases:
- with ONE worker thread (THREADS=1: the tightest pool, which deadlocked on the first upload), an
  upload, a findings report, a notebook store and a notebook run that queries the database all
  answer 200 within seconds;
- a notebook run is given the notebooks' listener (never the handler's request port, never the
  listener of the handler's own SQL), and that listener answers its SQL;
- the public `/_sql` refuses a gzip body that inflates beyond FINOPS_DB_SQL_MAX_BODY_MB with 413,
  without inflating it whole;
- with THREADS as the dbhandler Knative Service sets it: 50 concurrent one-row uploads (each its own
  run), 8 notebook runs querying the database (twice FINOPS_NOTEBOOK_MAX_RUNNING) and 10 external
  `/_sql` queries, all at once: no 503, no timeout, every row stored; the latencies are printed.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import DbHandler, start_dbhandler

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2024-01-01T00:00:00Z"
QUERY = """import json
cursor.execute("SELECT count(*) FROM costs")
print(json.dumps({"host": host, "port": port, "rows": cursor.fetchone()[0]}))
"""
TIMEOUT = 45.0  # well under the 60 s the deadlock took: a regression fails, it does not hang


def manifest_threads(service: str = "dbhandler") -> str:
    """THREADS of a Knative Service, as deployed (and as the local stack starts it)."""
    for doc in yaml.safe_load_all((ROOT / "knative" / "base" / "20-services.yaml").read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "Service" and doc["metadata"]["name"] == service:
            env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
            return str(env["THREADS"])
    raise AssertionError(f"no Service {service}")


def one_row(resource: str) -> list[dict[str, Any]]:
    labels = {"ResourceId": resource, "ResourceName": resource, "BillingPeriodStart": PERIOD, "BillingPeriodEnd": PERIOD,
              "ChargePeriodStart": PERIOD, "ChargePeriodEnd": PERIOD, "SkuPriceId": "sku", "BilledCost": "1.25",
              "ChargeCategory": "Usage", "BillingCurrency": "EUR"}
    return [{"labels": labels, "value": 1.25, "timestamp": 1700000000}]


def upload(server: DbHandler, n: int, tag: str) -> tuple[int, float]:
    """One one-row upload, its own source and run (a committed run each): (status, seconds)."""
    started = time.monotonic()
    params = {"table": "costs", "type": "cost", "source": f"ExporterScraperConfig/finops/{tag}-{n}", "run": f"{tag}-{n}",
              "part": "0", "final": "true"}
    resp = httpx.post(f"{server.url}/upload", params=params, content=json.dumps(one_row(f"{tag}-{n}")).encode(),
                      headers={"Content-Type": "application/json", **server.auth()}, timeout=TIMEOUT)
    return resp.status_code, time.monotonic() - started


def store_notebook(server: DbHandler, name: str, code: str) -> None:
    resp = httpx.post(f"{server.url}/compute/{name}/upload?overwrite=true", content=code.encode(), headers=server.auth(),
                      timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.json() == {"result": True}, resp.text


def run_notebook(server: DbHandler, name: str) -> tuple[int, float, str]:
    started = time.monotonic()
    resp = httpx.post(f"{server.url}/compute/{name}", json={}, headers={**server.auth(), "Accept": "application/json"},
                      timeout=TIMEOUT)
    return resp.status_code, time.monotonic() - started, resp.text


@pytest.fixture(scope="module", name="one_thread")
def one_thread_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    handler = start_dbhandler(tmp_path_factory.mktemp("one-thread"), {"THREADS": "1", "FINOPS_DB_SQL_MAX_BODY_MB": "1"})
    try:
        yield handler
    finally:
        handler.stop()


def test_one_worker_thread_serves_uploads_findings_and_notebook_runs(one_thread: DbHandler) -> None:
    status, seconds = upload(one_thread, 0, "single")
    assert status == 200 and seconds < 15, (status, seconds)
    findings = httpx.post(f"{one_thread.url}/upload/findings",
                          params={"table": "costs", "source": "ExporterScraperConfig/finops/single-0", "run": "single-0"},
                          json=[{"rule": "r", "column": "BilledCost", "severity": "error", "rows": 0}],
                          headers=one_thread.auth(), timeout=TIMEOUT)
    assert findings.status_code == 200, findings.text
    store_notebook(one_thread, "count", QUERY)
    status, seconds, text = run_notebook(one_thread, "count")
    assert status == 200 and seconds < 15, (status, seconds, text)
    assert json.loads(text)["rows"] == 1


def test_a_notebook_gets_the_notebooks_listener_never_the_handlers_ports(one_thread: DbHandler) -> None:
    store_notebook(one_thread, "where", QUERY)
    status, _, text = run_notebook(one_thread, "where")
    assert status == 200, text
    got = json.loads(text)
    assert got["host"] == "127.0.0.1" and int(got["port"]) == one_thread.notebook_sql_port
    assert one_thread.notebook_sql_port not in (one_thread.port, one_thread.sql_port)
    banner = httpx.get(f"http://127.0.0.1:{one_thread.notebook_sql_port}/", headers=one_thread.auth(), timeout=10)
    assert banner.status_code == 200 and banner.json()["finops_embedded"] is True
    refused = httpx.get(f"http://127.0.0.1:{one_thread.notebook_sql_port}/", timeout=10)
    assert refused.status_code == 401, "the listeners check credentials like the public /_sql"


def test_the_public_sql_refuses_a_gzip_bomb_with_413(one_thread: DbHandler) -> None:
    stmt = json.dumps({"stmt": "SELECT 1", "pad": "x" * (4 * 1024 * 1024)}).encode()
    bomb = gzip.compress(stmt)
    assert len(bomb) < 64 * 1024
    resp = httpx.post(f"{one_thread.url}/_sql", content=bomb, timeout=TIMEOUT,
                      headers={**one_thread.auth(), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status_code == 413, resp.text
    assert "1048576 bytes" in resp.json()["error"]["message"]
    small = httpx.post(f"{one_thread.url}/_sql", content=gzip.compress(b'{"stmt": "SELECT 1 AS one"}'), timeout=TIMEOUT,
                       headers={**one_thread.auth(), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert small.status_code == 200 and small.json()["rows"] == [[1]]


def test_50_concurrent_uploads_with_notebook_runs_and_sql_answer_without_503(tmp_path: Path) -> None:
    server = start_dbhandler(tmp_path, {"THREADS": manifest_threads()})
    try:
        store_notebook(server, "count", QUERY)
        with ThreadPoolExecutor(72) as pool:
            started = time.monotonic()
            uploads = [pool.submit(upload, server, n, "load") for n in range(50)]
            runs = [pool.submit(run_notebook, server, "count") for _ in range(8)]
            queries = [pool.submit(server.sql, "SELECT count(*) FROM costs") for _ in range(10)]
            upload_results = [f.result() for f in uploads]
            run_results = [f.result() for f in runs]
            for q in queries:
                q.result()
            wall = time.monotonic() - started
        statuses = [s for s, _ in upload_results] + [s for s, _, _ in run_results]
        assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
        latencies = sorted(t for _, t in upload_results)
        print(f"50 uploads + 8 notebook runs + 10 queries: wall {wall:.2f} s, upload p50 "
              f"{statistics.median(latencies):.2f} s, p99 {latencies[-1]:.2f} s, notebook runs max "
              f"{max(t for _, t, _ in run_results):.2f} s")
        assert server.sql("SELECT count(*), sum(billedcost) FROM costs") == [[50, 62.5]]
    finally:
        server.stop()
