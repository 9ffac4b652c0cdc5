"""Shared helpers of the exposition benchmarks: FOCUS-shaped samples and a JSON result writer."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from tests.focus_data import focus_rows

ROWS = int(os.environ.get("FINOPS_BENCH_ROWS", "20000"))
RESULTS = Path(__file__).resolve().parents[2] / ".bench"


def focus_samples(n: int = ROWS) -> tuple[pa.RecordBatch, list[dict[str, str]]]:
    """One `billed_cost` sample per FOCUS row, every non-x_ column a label (44 + value = 45)."""
    rows = [{k: v for k, v in r.items() if not k.startswith("x_")} for r in focus_rows(n)]
    table: dict[str, Any] = {"__name__": ["billed_cost"] * n, "__value__": [float(r["BilledCost"]) for r in rows]}
    table.update({name: [r[name] for r in rows] for name in rows[0]})
    return pa.RecordBatch.from_pydict(table), rows


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def report(name: str, rows: int, ours_s: float, baseline_s: float) -> dict[str, Any]:
    result = {"name": name, "rows": rows, "ours_s": round(ours_s, 4), "baseline_s": round(baseline_s, 4),
              "ratio": round(baseline_s / ours_s, 2), "ours_rows_per_s": round(rows / ours_s),
              "baseline_rows_per_s": round(rows / baseline_s)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result
