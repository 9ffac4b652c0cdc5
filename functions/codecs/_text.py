"""Small value formatters shared by the JSON codecs: Go-compatible text for numbers and times.

Krateo's exporter is written in Go; these reproduce the text Go produced so labels match.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa


def go_float(x: float) -> str:
    """Go's `%v` of a float64 (strconv 'g', shortest): exponent form when exp < -4 or exp >= 6.

    So 0.34 -> 0.34, 10 -> 10, 123456 -> 123456, 1234567 -> 1.234567e+06, 0.00001 -> 1e-05.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    e = len(ds) + exp - 1
    neg = "-" if sign else ""
    if e < -4 or e >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    return neg + plain_decimal(Decimal(repr(abs(x))))


def plain_decimal(d: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 27000.0 -> 27000, 1E+3 -> 1000."""
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def go_value(v: Any) -> str:
    """A decoded JSON value as Go's `%v` printed it; nested values become JSON text (documented)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return go_float(float(v))
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def rfc3339_utc(text: str) -> str:
    """Any RFC 3339 time -> UTC, seconds precision, `Z` (Go's time.RFC3339 of a UTC time)."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    u = dt.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def string_batch(names: list[str], columns: list[list[str]]) -> pa.RecordBatch:
    """Columns of Python strings -> one all-string record batch (no CSV text in between)."""
    schema = pa.schema([pa.field(n, pa.string(), nullable=False) for n in names])
    return pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], schema=schema)
