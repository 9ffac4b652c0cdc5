"""Benchmark: a FOCUS CSV file -> sample snapshot (read_payload + to_samples) vs pyarrow.csv.read_csv.

Writes .bench/csv_snapshot.json {"rows", "ours_s", "baseline_s", "ratio"} (ratio = baseline/ours)
and requires ratio >= 0.5: our all-string streaming path may cost at most twice a plain Arrow read.
Rows: FINOPS_BENCH_ROWS (default 200,000, ~1.5 KB each).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from focus_data import write_focus_csv  # noqa: E402

from functions.codecs.samples import SampleStats, to_samples  # noqa: E402
from functions.codecs.sources import read_payload  # noqa: E402

ROWS = int(os.environ.get("FINOPS_BENCH_ROWS", "200000"))


def test_csv_snapshot_keeps_up_with_a_plain_arrow_read(tmp_path: Path) -> None:
    path = tmp_path / "focus.csv"
    with path.open("w") as out:
        write_focus_csv(out, ROWS)
    t0 = time.perf_counter()
    baseline_rows = pacsv.read_csv(path).num_rows
    baseline = time.perf_counter() - t0
    stats = SampleStats()
    t0 = time.perf_counter()
    with path.open("rb") as body:
        for _ in to_samples(read_payload(body, "text/csv", "/focus.csv", "cost"), "cost", None, "bench", stats=stats):
            pass
    ours = time.perf_counter() - t0
    result = {"rows": ROWS, "ours_s": round(ours, 3), "baseline_s": round(baseline, 3),
              "ratio": round(baseline / ours, 3), "bytes": path.stat().st_size}
    print(json.dumps(result))
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/csv_snapshot.json").write_text(json.dumps(result) + "\n")
    assert baseline_rows == stats.rows == ROWS
    assert result["ratio"] >= 0.5
