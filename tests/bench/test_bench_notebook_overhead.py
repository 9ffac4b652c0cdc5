"""Overhead of running an empty notebook through the handler vs a bare `python -c pass` subprocess.

Cases (same run, same machine): `ours` = POST /compute/empty (code: `pass`) through HTTP to the real
handler (functions-framework, embedded mode): authentication, code lookup, temp dir, pipe, rlimits,
subprocess with the runner, the runner's crate import and database connection (Krateo's preamble
connects too), clean-up. `baseline` = `subprocess.run([python, "-c", "pass"])` from the test
process. Also reported: `imports` = `python -c "import functions.notebooks_api, crate.client"` (the
part of the overhead that is the interpreter loading the client). p50 and p99 of RUNS calls each;
ratio = baseline p50 / ours p50 (how many bare interpreters fit in one notebook run).
Env: FINOPS_BENCH_NOTEBOOK_RUNS (default 40). Writes .bench/notebook_overhead.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dbhandler_server
import httpx

RUNS = int(os.environ.get("FINOPS_BENCH_NOTEBOOK_RUNS", "40"))
REPO = Path(__file__).resolve().parents[2]


def _times(call: Callable[[], None], runs: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


def test_empty_notebook_overhead(tmp_path: Path) -> None:
    dbhandler_server.SOURCE = REPO / "functions" / "main.py"
    server = dbhandler_server.start_dbhandler(tmp_path)
    try:
        with httpx.Client(timeout=60, headers=server.auth()) as client:
            assert client.post(f"{server.url}/compute/empty/upload", content=b"pass\n").json() == {"result": True}

            def ours() -> None:
                answer = client.post(f"{server.url}/compute/empty", content=b"{}")
                assert answer.status_code == 200 and answer.text == ""

            ours_t = _times(ours, RUNS)
    finally:
        server.stop()
    baseline_t = _times(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), RUNS)  # noqa: S603
    imports_t = _times(lambda: subprocess.run(  # noqa: S603
        [sys.executable, "-c", "import functions.notebooks_api, crate.client"], check=True), RUNS)
    result = {"runs": RUNS, "ours": _summary(ours_t), "baseline": _summary(baseline_t), "imports": _summary(imports_t)}
    result["ratio"] = round(result["baseline"]["p50_ms"] / result["ours"]["p50_ms"], 3)
    result["overhead_p50_ms"] = round(result["ours"]["p50_ms"] - result["baseline"]["p50_ms"], 2)
    (REPO / ".bench").mkdir(exist_ok=True)
    (REPO / ".bench" / "notebook_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert result["ours"]["p50_ms"] < 2000  # a notebook call stays interactive
