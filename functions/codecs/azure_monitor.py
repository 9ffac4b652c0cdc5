"""Azure Monitor metrics JSON -> `ResourceId,metricName,timestamp,average,unit` (Krateo's exporter's columns).

One row per data point, across every page (each page is one JSON document). The resource id is
not in the response: Krateo takes it from `additionalVariables.ResourceId`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa

from functions.codecs._text import plain_decimal, rfc3339_utc, string_batch
from functions.errors import FieldError, InvalidInput

COLUMNS: tuple[str, ...] = ("ResourceId", "metricName", "timestamp", "average", "unit")


def _average(v: Any) -> str:
    """Go's FormatFloat(avg, 'f', -1, 64): a plain decimal; missing -> 0."""
    if v is None:
        return "0"
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"average is not a number: {v!r}")
    return plain_decimal(Decimal(repr(float(v))))


def _metrics(doc: Any, page: int) -> list[Any]:
    value = doc.get("value") if isinstance(doc, Mapping) else None
    if not isinstance(value, list):
        raise InvalidInput(
            "resource JSON payload must be an Azure Monitor metrics response (a 'value' list)",
            [FieldError(f"pages[{page}].value", "missing or not a list")],
        )
    return value


def to_batch(docs: Iterable[Any], resource_id: str) -> pa.RecordBatch:
    cols: list[list[str]] = [[] for _ in COLUMNS]
    errors: list[FieldError] = []
    for page, doc in enumerate(docs):
        for m, metric in enumerate(_metrics(doc, page)):
            if not isinstance(metric, Mapping):
                continue
            name = metric.get("name")
            metric_name = str(name.get("value", "")) if isinstance(name, Mapping) else ""
            unit = str(metric.get("unit") or "")
            for series in metric.get("timeseries") or []:
                for d, point in enumerate((series or {}).get("data") or []):
                    loc = f"pages[{page}].value[{m}].timeseries.data[{d}]"
                    try:
                        ts = rfc3339_utc(str(point["timeStamp"]))
                        avg = _average(point.get("average"))
                    except (KeyError, ValueError, TypeError, AttributeError) as exc:
                        errors.append(FieldError(loc, f"bad data point: {exc}"))
                        continue
                    for col, v in zip(cols, (resource_id, metric_name, ts, avg, unit), strict=True):
                        col.append(v)
    if errors:
        raise InvalidInput(f"{len(errors)} invalid Azure Monitor data point(s)", errors)
    return string_batch(list(COLUMNS), cols)
