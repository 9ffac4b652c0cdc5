"""Turn upload records (string label columns) into the typed columns of a target table, vectorised.

Pure: takes an Arrow table and the target's column types, returns typed Arrow columns (float64,
timestamp[ms], map<string, string>, string), the rows kept and one error per rejected row (naming
the column). `Converted.columns` gives the same values as Python lists the way the crate client
carries them (timestamps as epoch milliseconds, objects as dicts); the embedded engine takes the
Arrow columns as they are. Repetitive columns (periods, tags) are parsed once per distinct value.

Krateo differences (documented in the README):
- a number that does not parse rejects that row only (Krateo: the whole request answers 500);
- `Tags` parts are split at the FIRST ':' only, so `url: https://x` keeps its value (Krateo splits
  at every ':' and drops such parts); a Tags value that is a JSON object is taken as is;
- empty keys are dropped; label names are lower-cased and must be SQL-safe column names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

DOUBLE, TIMESTAMP, OBJECT, STRING = "DOUBLE", "TIMESTAMP", "OBJECT", "STRING"
BOOKKEEPING = ("finops_source", "finops_run", "finops_ingested_at", "finops_part")
_RESERVED_LABELS = {"generic": ("value", "timestamp")}  # generic's own columns: labels of these names are renamed
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,254}$")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


@dataclass(frozen=True)
class RowError:
    """One rejected row: its index in the request, the column at fault and why."""

    row: int
    loc: str
    msg: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "loc": self.loc, "msg": self.msg}


_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ms")


@dataclass
class Converted:
    """Typed Arrow columns (one value per kept row) and the rejected rows' errors."""

    arrays: dict[str, pa.Array]
    rows: int
    errors: list[RowError] = field(default_factory=list)
    row_numbers: list[int] = field(default_factory=list)
    """The request's row index of each kept row."""

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Python values as the crate client sends them: epoch ms timestamps, dict objects."""
        return {name: _pylist(array) for name, array in self.arrays.items()}


def _pylist(array: pa.Array) -> list[Any]:
    if pa.types.is_timestamp(array.type):
        return list(pc.cast(array, pa.int64()).to_pylist())
    if pa.types.is_map(array.type):
        return [None if v is None else dict(v) for v in array.to_pylist()]
    return list(array.to_pylist())


def convert(
    kind: str,
    table: pa.Table,
    types: Mapping[str, str],
    required: Sequence[str] = (),
    row_numbers: Sequence[int] | None = None,
) -> Converted:
    """Typed target columns of `table`; rows with an unparsable typed value or a missing required one are dropped."""
    numbers = list(row_numbers) if row_numbers is not None else list(range(table.num_rows))
    errors: list[RowError] = []
    bad = pa.array([False] * table.num_rows, pa.bool_())
    typed: dict[str, pa.Array] = {}
    for name, col in _label_columns(kind, table).items():
        if not _NAME.match(name) or name in BOOKKEEPING:
            msg = f"label name {name!r} is not usable as a column name (lower-case letters, digits, '_', not finops_*)"
            bad = _reject(bad, pc.is_valid(col), name, msg, numbers, errors)
            continue
        ctype = types.get(name, STRING)
        if ctype == OBJECT:
            typed[name] = _tags(col)
        elif ctype == DOUBLE:
            typed[name], wrong = _by_distinct(col, lambda c: _numbers(c, empty_zero=kind in ("cost", "resource")))
            bad = _reject(bad, wrong, name, "not a number", numbers, errors)
        elif ctype == TIMESTAMP:
            ms, wrong = _by_distinct(col, _timestamps)
            typed[name] = pc.cast(ms, _TS)
            bad = _reject(bad, wrong, name, "not a timestamp (RFC 3339 or YYYY-MM-DD)", numbers, errors)
        else:
            typed[name] = col
    if kind == "generic":
        typed.update(_generic_value_columns(table))
    for name in required:
        missing = pc.is_null(typed[name]) if name in typed else pa.array([True] * table.num_rows, pa.bool_())
        bad = _reject(bad, missing, name, f"{name} is required", numbers, errors)
    errors.sort(key=lambda e: e.row)
    if not errors:
        return Converted(typed, table.num_rows, errors, numbers)
    keep = pc.invert(bad)
    arrays = {n: pc.filter(a, keep) for n, a in typed.items()}
    kept = [n for n, k in zip(numbers, keep.to_pylist(), strict=True) if k]
    return Converted(arrays, len(kept), errors, kept)


def _by_distinct(col: pa.Array, parse: Callable[[pa.Array], tuple[pa.Array, pa.Array]]) -> tuple[pa.Array, pa.Array]:
    """`parse` (values, wrong-mask) run once per distinct value when values repeat (periods, prices)."""
    if len(col) < 1024:
        return parse(col)
    enc = pc.dictionary_encode(col)
    if len(enc.dictionary) * 2 > len(col):
        return parse(col)
    values, wrong = parse(enc.dictionary)
    return pc.take(values, enc.indices), pc.fill_null(pc.take(wrong, enc.indices), False)


def _tags(col: pa.Array) -> pa.Array:
    """Tags text -> map<string, string>, parsed once per distinct text."""
    enc = pc.dictionary_encode(col)
    maps = [parse_tags(v) for v in enc.dictionary.to_pylist()]
    return pc.take(pa.array([None if m is None else list(m.items()) for m in maps], _MAP), enc.indices)


def parse_tags(text: str | None) -> dict[str, str] | None:
    """Krateo's Tags rule (`k: v;k2: v2`, keys trimmed without '.', first wins), splitting at the first ':'."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {str(k).replace(".", ""): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition(":")
        key = key.strip().replace(".", "")
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def _label_columns(kind: str, table: pa.Table) -> dict[str, pa.Array]:
    """Label columns by lower-cased name (the first of names equal but for case wins where set)."""
    out: dict[str, pa.Array] = {}
    reserved = _RESERVED_LABELS.get(kind, ())
    for raw in table.column_names:
        if raw.startswith("__") and raw.endswith("__"):
            continue
        col = table.column(raw).combine_chunks()
        if not pa.types.is_string(col.type):
            col = pc.cast(col, pa.string())
        name = raw.lower()
        if name in reserved:
            name = f"label_{name}"
        out[name] = pc.coalesce(out[name], col) if name in out else col
    return out


def _generic_value_columns(table: pa.Table) -> dict[str, pa.Array]:
    """generic: `value` from the sample value, `timestamp` (epoch ms) from the record's unix seconds."""
    n = table.num_rows
    out: dict[str, pa.Array] = {}
    if "__value__" in table.column_names:
        v = pc.cast(table.column("__value__").combine_chunks(), pa.float64())
        out["value"] = pc.if_else(pc.is_finite(v), v, pa.scalar(None, pa.float64()))
    else:
        out["value"] = pa.nulls(n, pa.float64())
    if "__timestamp__" in table.column_names:
        ts = pc.cast(table.column("__timestamp__").combine_chunks(), pa.int64())
        out["timestamp"] = pc.cast(pc.multiply(ts, 1000), _TS)
    else:
        out["timestamp"] = pa.nulls(n, _TS)
    return out


def _numbers(col: pa.Array, empty_zero: bool) -> tuple[pa.Array, pa.Array]:
    """float64 values and a mask of present-but-unparsable cells; '' is 0.0 where Krateo says so, else null."""
    s = pc.utf8_trim_whitespace(col)
    empty = pc.equal(s, "")
    ok = pc.match_substring_regex(s, _NUMBER)
    values = pc.cast(pc.if_else(ok, s, pa.scalar(None, pa.string())), pa.float64())
    finite = pc.fill_null(pc.is_finite(values), True)
    values = pc.if_else(finite, values, pa.scalar(None, pa.float64()))
    if empty_zero:
        values = pc.if_else(pc.fill_null(empty, False), 0.0, values)
    wrong = pc.and_(pc.is_valid(s), pc.invert(pc.or_(pc.and_(ok, finite), empty)))
    return values, pc.fill_null(wrong, False)


def _timestamps(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Epoch milliseconds (int64) from RFC 3339 / ISO dates (no zone = UTC); '' is null; mask of bad cells."""
    s = pc.utf8_trim_whitespace(col)
    s = pc.replace_substring_regex(s, r"^(\d{4}-\d{2}-\d{2})[ tT]", r"\1T")
    s = pc.replace_substring_regex(s, r"[zZ]$", "Z")
    frac = pc.struct_field(pc.extract_regex(s, r"\.(?P<f>\d+)"), [0])
    frac_ms = pc.cast(pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 3, "0"), 0, 3), pa.int64())
    s = pc.replace_substring_regex(s, r"\.\d+", "")
    parsed = [pc.cast(pc.strptime(s, format=f, unit="ms", error_is_null=True), pa.int64()) for f in _FORMATS]
    ms = pc.coalesce(*parsed)
    ms = pc.add(ms, pc.fill_null(frac_ms, 0))
    empty = pc.equal(s, "")
    wrong = pc.and_(pc.and_(pc.is_valid(s), pc.invert(empty)), pc.is_null(ms))
    return ms, pc.fill_null(wrong, False)


def _reject(bad: pa.Array, mask: pa.Array, name: str, msg: str, numbers: list[int], errors: list[RowError]) -> pa.Array:
    """Record one error per newly rejected row and return the updated rejection mask."""
    mask = pc.fill_null(mask, False)
    new = pc.and_(mask, pc.invert(bad))
    for i in pc.indices_nonzero(new).to_pylist():
        errors.append(RowError(numbers[i], name, msg))
    return pc.or_(bad, mask)
