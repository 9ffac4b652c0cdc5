"""Benchmark: FOCUS conformance findings on a million-row, 65-column FOCUS 1.3 table.

Ours: `focus_conformance.check(table)` (every rule: presence, nulls, allowed values, numbers,
date-times, period order). Baseline, measured in the same run on the same table: a plain
pyarrow.compute pass that only counts the nulls of the same columns (Arrow nulls plus cells that are
exactly a null literal). ratio = baseline / ours: how many such null-count passes one check costs.
Each is timed best of 2, after one untimed run of each (the first touch of fresh memory is not the
checker's cost). Asserts at least 100,000 rows/s (a million rows within 10 s on 2 cores) and no
finding on the clean table. Rows: FINOPS_BENCH_CONFORMANCE_ROWS (default 1,000,000), built by
repeating 20,000 provider-shaped rows of focus-data-toolkit (Azure, FOCUS 1.3), or the repository's
own FOCUS 1.0 rows when the toolkit is not installed. Writes .bench/focus_conformance.json.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from functions.codecs import focus_conformance, focus_values
from functions.codecs.sources import read_payload
from functions.demo.focus_rows import FOCUS_COLUMNS, focus_rows
from functions.models import focus_columns
from tests.bench._exposition_bench import best_of, report

ROWS = int(os.environ.get("FINOPS_BENCH_CONFORMANCE_ROWS", "1000000"))
BLOCK = 20_000


def _block() -> tuple[pa.Table, str]:
    """BLOCK clean rows as string columns, and what they are."""
    if importlib.util.find_spec("focus_data_toolkit") is not None:
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([sys.executable, "-m", "focus_data_toolkit", "generate", "--provider", "azure",
                            "--focus-version", "1.3", "--rows", str(BLOCK), "--seed", "5", "--out", out],
                           check=True, capture_output=True, timeout=300)
            (path,) = Path(out).glob("*cost_and_usage*.csv")
            with path.open("rb") as body:
                return pa.Table.from_batches(list(read_payload(body, "text/csv", str(path), "cost"))), "azure-1.3"
    text = io.StringIO()
    writer = csv.DictWriter(text, FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(focus_rows(BLOCK, seed=5))
    body = io.BytesIO(text.getvalue().encode())
    return pa.Table.from_batches(list(read_payload(body, "text/csv", "/focus.csv", "cost"))), "focus-1.0"


def test_conformance_check_of_a_million_rows() -> None:
    block, shape = _block()
    block = block.combine_chunks()
    table = pa.concat_tables([block] * (ROWS // BLOCK + 1)).slice(0, ROWS)
    checked = [n for n in table.column_names if n.lower() in focus_columns.BY_LOWER]
    literals = pa.array(focus_values.NULL_LITERALS, pa.string())

    def ours() -> list[focus_conformance.Finding]:
        return focus_conformance.check(table)

    def baseline() -> int:
        return sum(table.column(n).null_count + (pc.sum(pc.is_in(table.column(n), value_set=literals)).as_py() or 0)
                   for n in checked)

    found = ours()
    baseline()
    result = report("focus_conformance", ROWS, best_of(ours, 2), best_of(baseline, 2))
    print(f"shape={shape} columns={table.num_columns} checked={len(checked)}")
    assert found == [], [f.to_dict() for f in found]
    assert result["ours_rows_per_s"] >= 100_000
