"""The forecaster's real KServe server in a subprocess on 127.0.0.1, for tests and the benchmark (a plain
helper module, not a test). Needs the `forecast` extra: `EXTRA_MISSING` says why when it is absent."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

EXTRA_MISSING = next((f"the forecast extra is not installed ({name} missing): pip install -e '.[forecast]'"
                      for name in ("kserve", "statsforecast", "numpy") if importlib.util.find_spec(name) is None), None)
"""None when the extra is installed, else the reason to skip."""


def start_forecaster(port: int, log: Path, *args: str, command: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
    """`python -m functions.stages.forecaster --host 127.0.0.1 --port PORT ARGS` (or `command`), once
    GET /v2/health/ready answers 200; the process's output goes to `log`."""
    argv = list(command) if command else [sys.executable, "-m", "functions.stages.forecaster"]
    with log.open("wb") as out:
        process = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(port), *args],
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the forecaster exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the forecaster did not get ready within 90 s: {log.read_text()[-3000:]}")


def infer_body(rows: Any, shape: Sequence[int] | None = None, name: str = "past_values",
               parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """A v2 request as Krateo's runner builds it: `data` the B x L matrix as nested lists, shape [B, L, 1]
    unless given, FP32; NaN becomes null (JSON has no NaN)."""
    data = [[None if isinstance(v, float) and math.isnan(v) else float(v) for v in row] for row in rows]
    body: dict[str, Any] = {"inputs": [{"name": name, "shape": list(shape or [len(data), len(data[0]), 1]),
                                        "datatype": "FP32", "data": data}]}
    if parameters is not None:
        body["parameters"] = parameters
    return body
