"""Any JSON -> a string table: Krateo's generic fallback (finops-prometheus-exporter).

Rows come from a top-level array of objects, or from the FIRST member (document order) of a
top-level object that holds an array of objects. Krateo picked a member in Go's random map order;
we are deterministic. The header is the sorted union of keys; missing or null cells are "".
Scalars are printed like Go's `%v` (0.34, 10, true, 1e+06); nested objects and arrays become
compact JSON text (Go printed `map[...]`, which nobody can parse back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from functions.codecs._text import go_value, string_batch
from functions.errors import FieldError, InvalidInput


def _rows_of(doc: Any, page: int) -> list[Mapping[str, Any]]:
    if isinstance(doc, list):
        return [r for r in doc if isinstance(r, Mapping)]
    if isinstance(doc, Mapping):
        empty = False
        for value in doc.values():
            if isinstance(value, list):
                rows = [r for r in value if isinstance(r, Mapping)]
                if rows:
                    return rows
                empty = empty or not value
        if empty:
            return []  # e.g. {"value": []}: a valid answer with no rows
    raise InvalidInput(
        "JSON payload holds no array of objects (expected a top-level array, or an object with a member holding one)",
        [FieldError(f"pages[{page}]", f"got {type(doc).__name__}")],
    )


def to_batch(docs: Iterable[Any]) -> pa.RecordBatch | None:
    """One table over all pages; None when there are no rows at all (an empty array)."""
    rows = [r for page, doc in enumerate(docs) for r in _rows_of(doc, page)]
    if not rows:
        return None
    header = sorted({k for r in rows for k in r})
    cols = [[go_value(r.get(k)) for r in rows] for k in header]
    return string_batch(header, cols)
