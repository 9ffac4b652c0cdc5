"""`finops demo` (what `./taskw demo` runs) end to end on the embedded default, as a user runs it.

Cases: exit 0 with a fresh state directory; every step reports (collection cycles, reconciliation to
the cent, AI costs, the notebook, the optimizer's day-2 window for the demo VM and its day-1
placement in an allowed region); stdout carries the showback, the notebook's table and the
optimization lines; no traceback anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.timeout(300)]


def test_the_demo_runs_every_step_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "functions.cli", "demo", "--state", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("finops run ExporterScraperConfig/finops/demo-focus-cost: ok",
                 "finops run ExporterScraperConfig/finops/demo-azure-usage: ok",
                 "reconciled: rows and BilledCost per currency match", "notebook cost-breakdown",
                 "UPDATE -> spec.optimization for 1 resource(s)", "done; stopping the stack"):
        assert step in proc.stderr, step
    assert "FinOps showback" in proc.stdout and "Optimization (the optimizer webhook" in proc.stdout
    day2 = next(line for line in proc.stdout.splitlines() if line.strip().startswith("day-2 demo-vm"))
    assert "resourceDelta -" in day2 and "idle " in day2
    day1 = next(line for line in proc.stdout.splitlines() if line.strip().startswith("day-1"))
    assert "northeurope starting" in day1 or "westeurope starting" in day1
    assert "Traceback" not in proc.stdout + proc.stderr
