"""Concurrent one-row uploads through the real handler: latency and answers, vs the same uploads one by one.

Cases (same run, same handler: functions-framework, embedded mode, THREADS as the dbhandler Knative
Service sets it): `ours` = N one-row `POST /upload` calls at once (each its own source and committed
run), for N in 10 and 50: wall time, p50 and p99 latency, how many did not answer 200 (before the
handler had SQL listeners of its own, 10 at once took 60 s and most answered 503). `baseline` = the
same number of uploads sent one after another. ratio = baseline wall / ours wall: the engine
serialises SQL, so about 1 means concurrency costs nothing; bar: every answer 200 and ratio >= 0.5.
Env: FINOPS_BENCH_CONCURRENT (default "10,50"). Writes .bench/concurrent_uploads.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dbhandler_server import start_dbhandler
from test_attack_concurrency_no_self_deadlock import manifest_threads, upload

LEVELS = [int(n) for n in os.environ.get("FINOPS_BENCH_CONCURRENT", "10,50").split(",")]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_concurrent_one_row_uploads(tmp_path: Path) -> None:
    threads = manifest_threads()
    server = start_dbhandler(tmp_path, {"THREADS": threads})
    results = []
    try:
        upload(server, 0, "warm")
        for n in LEVELS:
            started = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(lambda i, n=n: upload(server, i, f"c{n}"), range(n)))
            ours = time.perf_counter() - started
            started = time.perf_counter()
            alone = [upload(server, i, f"s{n}") for i in range(n)]
            baseline = time.perf_counter() - started
            latencies = [t for _, t in answers]
            failed = sum(1 for s, _ in answers + alone if s != 200)
            results.append({
                "concurrent": n, "threads": int(threads), "ours_wall_s": round(ours, 3),
                "p50_s": round(statistics.median(latencies), 3), "p99_s": round(_percentile(latencies, 0.99), 3),
                "not_200": failed, "baseline_wall_s": round(baseline, 3),
                "baseline_p50_s": round(statistics.median([t for _, t in alone]), 3),
                "ratio": round(baseline / ours, 3),
            })
            print(json.dumps(results[-1]))
    finally:
        server.stop()
    out = Path(".bench")
    out.mkdir(exist_ok=True)
    (out / "concurrent_uploads.json").write_text(json.dumps(results, indent=2) + "\n")
    for r in results:
        assert r["not_200"] == 0, r
        assert r["ratio"] >= 0.5, r
