"""Prometheus HTTP API query response (vector or matrix) -> a label table (as Krateo's exporter reads it).

Columns: the union of label names sorted by raw name, sanitised Krateo's way, then `value` (the
string Prometheus sent) and `timestamp` (RFC3339Nano, UTC). Anything that is not a successful,
non-empty vector or matrix is not ours: `to_batch` returns None and the caller falls back to the
generic JSON table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from functions.codecs._text import string_batch

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def sanitise_labels(raw: Sequence[str]) -> list[str]:
    """Krateo's renaming: `__name__`->metric_name, trim `_`, invalid chars->`_`, empty->label,
    leading digit->`label_`, collisions `_2`, `_3`... (in the order given)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in raw:
        s = "metric_name" if name == "__name__" else _INVALID.sub("_", name.strip("_"))
        s = s or "label"
        if s[0].isdigit():
            s = "label_" + s
        base, n = s, 1
        while s in seen:
            n += 1
            s = f"{base}_{n}"
        seen.add(s)
        out.append(s)
    return out


def rfc3339_nano(ts: Any) -> str:
    """A unix float (as sent) -> Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed)."""
    d = Decimal(repr(ts)) if isinstance(ts, float) else Decimal(str(ts))
    sec = int(d // 1)
    nanos = int(((d - sec) * 1_000_000_000).to_integral_value())
    t = datetime.fromtimestamp(sec, UTC)
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{frac}Z"


def _results(doc: Any) -> list[Any] | None:
    if not isinstance(doc, Mapping) or doc.get("status") != "success":
        return None
    data = doc.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") not in ("vector", "matrix"):
        return None
    result = data.get("result")
    if not isinstance(result, list) or not result or not all(isinstance(r, Mapping) for r in result):
        return None
    return result


def _samples(series: Mapping[str, Any]) -> list[Any]:
    if "values" in series:
        return list(series.get("values") or [])
    return [series["value"]] if series.get("value") is not None else []


def to_batch(docs: Sequence[Any]) -> pa.RecordBatch | None:
    """All documents must be Prometheus query responses; else None (fall back to generic JSON)."""
    results = [_results(d) for d in docs]
    if not docs or any(r is None for r in results):
        return None
    series_list = [s for r in results for s in (r or [])]
    raw = sorted({k for s in series_list for k in (s.get("metric") or {})})
    names = sanitise_labels(raw) + ["value", "timestamp"]
    cols: list[list[str]] = [[] for _ in names]
    for series in series_list:
        metric = series.get("metric") or {}
        labels = [str(metric.get(k, "")) for k in raw]
        for sample in _samples(series):
            if not isinstance(sample, list) or len(sample) != 2:
                return None
            row = [*labels, str(sample[1]), rfc3339_nano(sample[0])]
            for col, v in zip(cols, row, strict=True):
                col.append(v)
    return string_batch(names, cols)
