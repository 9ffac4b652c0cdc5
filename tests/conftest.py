"""Shared test set-up: the tests folder is importable (loopback servers, data generators)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for extra in (TESTS, TESTS / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

# `import tests.<helper>` must mean this folder. cratedb-sqlparse (a dev dependency) installs a
# top-level `tests` package into site-packages, and a regular package always wins over this
# folder (a namespace package), whatever the order of sys.path: bind the name to this folder first.
if str(TESTS) not in list(getattr(sys.modules.get("tests"), "__path__", [])):
    _ours = types.ModuleType("tests")
    _ours.__path__ = [str(TESTS)]
    sys.modules["tests"] = _ours
