"""Shared test set-up: the tests folder is importable (loopback servers, data generators)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for extra in (TESTS, TESTS / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
