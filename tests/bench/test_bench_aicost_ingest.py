"""AI cost ingest: sustained events/s, event -> queryable latency, and budget alert latency.

Everything real on 127.0.0.1: the aicost function and the database handler (embedded engine, a
fresh DuckDB file), started by tests/aicost_server.py, on the machine's cores (2 in CI).

- throughput: EVENTS generated events (functions.demo.aicost_producer, seeded), pre-encoded as
  `application/cloudevents-batch+json` batches of BATCH, POSTed by 2 concurrent senders. Baseline:
  a raw insert of the SAME rows (priced FOCUS rows, built outside the timing) with the crate client's
  executemany through the same handler's /_sql into a plain table, in chunks of BATCH.
  ratio = ours events/s / raw rows/s (target: ours >= 5,000 events/s);
- latency: while a background sender streams batches at LOAD_RATE events/s, PROBES single events are
  POSTed one at a time; latency = from the POST until `SELECT ... WHERE x_eventid = ?` sees the row
  (polled every 2 ms). p50/p99 (target p99 < 1 s);
- alert latency: an AICostBudget (1 USD per day, threshold 1.0) and an HTTP sink; each of ALERTS
  events costs 2 USD on its own day, so each crosses once; latency = from the POST until the sink
  received io.finops.budget.exceeded.

Writes .bench/aicost_ingest.json and prints it.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aicost_server import AICost, start_aicost
from dbhandler_server import AUTH

from functions.clients.db import Database
from functions.codecs import ai_pricing
from functions.demo.aicost_producer import Generator, encode_batch
from functions.models.aicost import AICostEvent
from functions.stages.aicost_ingest import focus_row
from functions.storage import aicost_store
from functions.storage.dialect import quote_ident

EVENTS = int(os.environ.get("FINOPS_BENCH_AI_EVENTS", "40000"))
BATCH = int(os.environ.get("FINOPS_BENCH_AI_BATCH", "1000"))
PROBES = int(os.environ.get("FINOPS_BENCH_AI_PROBES", "200"))
LOAD_RATE = float(os.environ.get("FINOPS_BENCH_AI_LOAD_RATE", "2000"))
ALERTS = int(os.environ.get("FINOPS_BENCH_AI_ALERTS", "20"))
HEADERS = {"Content-Type": "application/cloudevents-batch+json", **AUTH}
START = datetime(2025, 6, 1, tzinfo=UTC)
ALERT_DAY0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
BUDGET = {"apiVersion": "finops.krateo.io/v1", "kind": "AICostBudget",
          "metadata": {"name": "bench-alerts", "namespace": "finops"},
          "spec": {"team": "alert-team", "amount": "1", "period": "day", "thresholds": [1.0]}}


class Sink:
    """An HTTP sink recording when each budget.exceeded arrived, by period label."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("ce-type") == "io.finops.budget.exceeded":
                    sink.arrived[json.loads(body)["periodLabel"]] = time.perf_counter()
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _post(client: httpx.Client, url: str, body: bytes) -> int:
    resp = client.post(url, content=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text[:500]
    return int(resp.json()["accepted"])


def _throughput(aicost: AICost, items: list[dict[str, Any]]) -> dict[str, Any]:
    bodies = [encode_batch(items[i:i + BATCH]) for i in range(0, len(items), BATCH)]
    _post(httpx.Client(timeout=120), aicost.url, bodies[0])  # warm-up: tables created, pricing loaded
    clients = [httpx.Client(timeout=120) for _ in range(2)]
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        accepted = sum(pool.map(lambda ib: _post(clients[ib[0] % 2], aicost.url, ib[1]), enumerate(bodies[1:])))
    seconds = time.perf_counter() - started
    for c in clients:
        c.close()
    n = len(items) - min(BATCH, len(items))
    assert accepted == n
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds)}


def _raw_insert(aicost: AICost, items: list[dict[str, Any]]) -> dict[str, Any]:
    table, now = ai_pricing.price_table([]), datetime.now(UTC)
    rows = []
    for item in items:
        event = AICostEvent.model_validate({"id": item["id"], "time": item["time"], "data": item["data"]})
        rows.append(focus_row(event, ai_pricing.price(event, table), now))
    db = Database(aicost.db.url, "finops", "s3cret")
    cols = aicost_store.event_columns()
    db.execute("CREATE TABLE raw_ai (" + ", ".join(f"{quote_ident(c)} {t.replace(' PRIMARY KEY', '')}" for c, t in cols.items()) + ")")
    stmt = f"INSERT INTO raw_ai ({', '.join(quote_ident(c) for c in cols)}) VALUES ({', '.join('?' for _ in cols)})"
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        assert db.executemany(stmt, rows[i:i + BATCH]).count(-2) == 0
    seconds = time.perf_counter() - started
    db.close()
    return {"rows": len(rows), "seconds": round(seconds, 3), "rows_per_s": round(len(rows) / seconds)}


def _latency(aicost: AICost) -> dict[str, Any]:
    stop = threading.Event()
    load = Generator(seed=99)

    def background() -> None:
        with httpx.Client(timeout=120) as client:
            step = BATCH / LOAD_RATE
            nxt = time.perf_counter()
            while not stop.is_set():
                _post(client, aicost.url, encode_batch(load.batch(BATCH, datetime.now(UTC))))
                nxt += step
                time.sleep(max(0.0, nxt - time.perf_counter()))

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    probes = Generator(seed=1234).batch(PROBES, START)
    db = Database(aicost.db.url, "finops", "s3cret")
    out: list[float] = []
    try:
        with httpx.Client(timeout=60) as client:
            for item in probes:
                t0 = time.perf_counter()
                _post(client, aicost.url, encode_batch([item]))
                while not db.execute("SELECT count(*) FROM ai_costs WHERE x_eventid = ?", [item["id"]]).rows[0][0]:
                    time.sleep(0.002)
                out.append(time.perf_counter() - t0)
    finally:
        stop.set()
        thread.join(120)
        db.close()
    out.sort()
    return {"probes": len(out), "background_events_per_s": LOAD_RATE, "p50_ms": round(statistics.median(out) * 1000, 1),
            "p99_ms": round(out[min(len(out) - 1, int(len(out) * 0.99))] * 1000, 1), "max_ms": round(out[-1] * 1000, 1)}


def _alerts(aicost: AICost, sink: Sink) -> dict[str, Any]:
    out = []
    with httpx.Client(timeout=60) as client:
        for i in range(ALERTS):
            day = ALERT_DAY0 + timedelta(days=i)
            item = {"specversion": "1.0", "type": "io.finops.aicost.usage", "source": "/bench", "id": f"alert-{i}",
                    "time": day.isoformat().replace("+00:00", "Z"),
                    "data": {"team": "alert-team", "project": "p", "source": "llm-api", "cost": {"amount": "2", "currency": "USD"}}}
            t0 = time.perf_counter()
            _post(client, aicost.url, encode_batch([item]))
            label = day.strftime("%Y-%m-%d")
            deadline = time.monotonic() + 30
            while label not in sink.arrived and time.monotonic() < deadline:
                time.sleep(0.001)
            assert label in sink.arrived, f"no alert for {label}"
            out.append(sink.arrived[label] - t0)
    out.sort()
    return {"alerts": len(out), "p50_ms": round(statistics.median(out) * 1000, 1), "max_ms": round(out[-1] * 1000, 1)}


def test_aicost_ingest_throughput_and_latency(tmp_path: Path) -> None:
    sink = Sink()
    aicost = start_aicost(tmp_path, sink_url=sink.url, crs=[BUDGET])
    try:
        items = Generator(seed=42).batch(EVENTS, START, timedelta(milliseconds=1))
        ours = _throughput(aicost, items)
        raw = _raw_insert(aicost, items[min(BATCH, len(items)):])
        latency = _latency(aicost)
        alerts = _alerts(aicost, sink)
    finally:
        aicost.stop()
        sink.stop()
    result = {"cores": os.cpu_count(), "batch": BATCH, "ingest": ours, "raw_insert": raw,
              "ratio": round(ours["events_per_s"] / raw["rows_per_s"], 3),
              "target_events_per_s": 5000, "latency": latency, "target_p99_ms": 1000, "alert_latency": alerts}
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "aicost_ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
