"""`import functions.main` loads functions-framework, the serving shell and the standard library, nothing more.

Why: every target is its own Knative Service scaled to zero, so a cold start pays for whatever
functions/main.py imports before the first request can be answered. A stage, a client or a model
pulls in duckdb, pyarrow, pydantic, httpx, the Kubernetes client or the OPA bindings (hundreds of
milliseconds); each target imports its own stage on its first request, never at import time.

What is asserted is the set of modules the import adds in a fresh interpreter, not a duration
(performance targets live in benchmarks, not in timed tests): none of HEAVY, none of our modules
but the shell (SHELL), and beyond what `import functions_framework` alone loads (the framework's
floor, whatever its version pulls in) only the standard library. The measured import time
(`-X importtime`) is printed; tests/bench/test_cold_start.py records it against its 1 s goal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HEAVY = ("duckdb", "pyarrow", "pandas", "numpy", "httpx", "httpx_auth", "crate", "kubernetes", "kopf",
         "opa_bindings", "pydantic", "pydantic_settings", "orjson", "yaml", "prometheus_client", "genai_prices",
         "seccomp")
"""Our dependencies that no target needs before its first request (each is imported by a stage or client)."""

SHELL = ("functions", "functions.main", "functions.serving")
"""Our modules importing functions.main may load (functions.serving with its submodules): the package,
the targets and the HTTP shell around the stages, all of which defer their other imports to first use."""

_PROBE = """
import json, sys
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _imported(module: str) -> tuple[set[str], dict[str, int]]:
    """The modules `import module` adds in a fresh interpreter, and `-X importtime`'s cumulative µs by module."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", _PROBE.format(module=module)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    cumulative = {m.group(2): int(m.group(1)) for m in
                  re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)\s*$", done.stderr, re.MULTILINE)}
    return set(json.loads(done.stdout.strip().splitlines()[-1])), cumulative


def _in_shell(name: str) -> bool:
    return name in SHELL or name.startswith("functions.serving.")


def test_importing_main_loads_no_stage_client_or_heavy_library() -> None:
    main, times = _imported("functions.main")
    framework, _ = _imported("functions_framework")
    print(f"import functions.main: {times['functions.main'] / 1000:.1f} ms cumulative "
          f"(functions_framework: {times.get('functions_framework', 0) / 1000:.1f} ms of it), {len(main)} modules")
    assert "functions.main" in main and "functions_framework" in main  # the probe saw the import itself

    heavy = sorted({name.split(".")[0] for name in main} & set(HEAVY))
    assert not heavy, f"functions.main imports heavy packages at import time: {heavy}"

    ours = sorted(name for name in main if name.split(".")[0] == "functions" and not _in_shell(name))
    assert not ours, f"functions.main imports our modules beyond its shell (import them on first use): {ours}"

    added = sorted(name for name in main - framework
                   if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "functions")
    assert not added, f"functions.main imports third-party modules beyond functions-framework's own: {added}"
