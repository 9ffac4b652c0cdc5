"""Kubernetes list of FocusConfig -> the 50 FOCUS columns of Krateo's FocusConfig, as one string batch.

Why build Arrow directly: Krateo joined fields with `,` without quoting, so a comma in any value
broke the whole cycle. We keep Krateo's value conversions (quantities as plain
decimals, times as RFC 3339 UTC, tag lists as `k=v;k2=v2`) but never go through CSV text, so
commas, quotes and newlines survive.

Differences from Krateo, so that totals stay right: an absent or NULL value (`null`, `"NULL"`, `""`)
stays empty, the FOCUS null (Krateo wrote `0` for a quantity and `0001-01-01T00:00:00Z` for a time:
a missing quantity looked like a real zero); a value that does not convert is kept as its text, so
the row reaches the database handler and is rejected there with its row, column and value (Krateo
failed the whole payload for one bad cell).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from functions.codecs._text import plain_decimal, rfc3339_utc, string_batch
from functions.codecs.focus_values import NULL_LITERALS
from functions.errors import FieldError, InvalidInput
from functions.models.focus import FOCUS_FIELDS, L, Q, T

# The 50 (JSON field, column, kind) triples live with the FocusConfig model: one list, one order.


FOCUS_COLUMNS: tuple[str, ...] = tuple(col for _, col, _ in FOCUS_FIELDS)

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
    "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}


def quantity_text(value: Any) -> str:
    """A Kubernetes quantity (number or string like `1.5k`, `100m`, `2Ki`) as a plain decimal; "" when absent."""
    if value is None or (isinstance(value, str) and value.strip() in NULL_LITERALS):
        return ""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    else:
        m = _QUANTITY.match(str(value).strip())
        if m is None:
            raise ValueError(f"not a quantity: {value!r}")
        number, suffix = m.group(1), m.group(2) or ""
        try:
            scale = _SUFFIX[suffix] if suffix in _SUFFIX else Decimal("1" + suffix.lower())
            d = Decimal(number) * scale
        except InvalidOperation as exc:
            raise ValueError(f"not a quantity: {value!r}") from exc
    return plain_decimal(d)


def _tags_text(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, list):
        raise ValueError("expected a list of {key, value}")
    return ";".join(f"{t.get('key', '')}={t.get('value', '')}" for t in value if isinstance(t, Mapping))


def _cell(kind: str, value: Any) -> str:
    if kind == Q:
        return quantity_text(value)
    if kind == T:
        return "" if value is None or str(value).strip() in NULL_LITERALS else rfc3339_utc(str(value))
    if kind == L:
        return _tags_text(value)
    return "" if value is None else str(value)


def _items(docs: Iterable[Any]) -> Iterable[tuple[int, Any]]:
    n = 0
    for doc in docs:
        items = doc.get("items") if isinstance(doc, Mapping) else None
        if not isinstance(items, list):
            raise InvalidInput(
                'cost JSON payload must be a Kubernetes list of FocusConfig ({"items": [...]})',
                [FieldError("items", "missing or not a list")],
            )
        for item in items:
            yield n, item
            n += 1


def to_batch(docs: Iterable[Any], problems: list[FieldError] | None = None) -> pa.RecordBatch:
    """One row per FocusConfig item across all pages. A value that does not convert is kept as its
    text (its row is rejected downstream, naming it) and, when `problems` is given, listed there."""
    columns: list[list[str]] = [[] for _ in FOCUS_FIELDS]
    for n, item in _items(docs):
        spec = item.get("spec") if isinstance(item, Mapping) else None
        focus = spec.get("focusSpec") if isinstance(spec, Mapping) else None
        focus = focus if isinstance(focus, Mapping) else {}
        for col, (field, _, kind) in zip(columns, FOCUS_FIELDS, strict=True):
            value = focus.get(field)
            try:
                col.append(_cell(kind, value))
            except (ValueError, TypeError) as exc:
                if problems is not None:
                    problems.append(FieldError(f"items[{n}].spec.focusSpec.{field}", str(exc)))
                col.append(value if isinstance(value, str) else json.dumps(value, default=str))
    return string_batch(list(FOCUS_COLUMNS), columns)
