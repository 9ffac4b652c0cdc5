"""Turn upload records (string label columns) into the typed columns of a target table, vectorised.

Pure: takes an Arrow table and the target's column types, returns typed Arrow columns (float64,
timestamp[ms], map<string, string>, string), the rows kept and one error per rejected row (naming
the column). `Converted.columns` gives the same values as Python lists the way the crate client
carries them (timestamps as epoch milliseconds, objects as dicts); the embedded engine takes the
Arrow columns as they are. Repetitive columns (periods, tags) are parsed once per distinct value.

Cells follow functions.codecs.focus_values, the rules every ingest path shares: empty, `NULL` and
`null` cells are SQL NULL in every column type (never 0.0); numbers and timestamps must be
FOCUS-conformant, and a cell that is not rejects its row with the column and the value named.

Krateo differences (documented in docs/krateo-differences.md):
- a number that does not parse rejects that row only (Krateo: the whole request answers 500);
- an empty number is NULL (Krateo stored 0.0, so a missing quantity looked like a real zero);
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

from functions.codecs import focus_values, json_limits

DOUBLE, TIMESTAMP, OBJECT, STRING = "DOUBLE", "TIMESTAMP", "OBJECT", "STRING"
BOOKKEEPING = ("finops_source", "finops_run", "finops_ingested_at", "finops_part")
_RESERVED_LABELS = {"generic": ("value", "timestamp")}  # generic's own columns: labels of these names are renamed
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,254}$")
ROW_COLUMN = "__row__"
"""Optional records column: the source row number of each record (1-based, set by our exporter)."""


@dataclass(frozen=True)
class RowError:
    """One rejected row: its number (the source's row when known, else its index in the request),
    the column at fault, why, the offending value and the raw row (labels as received)."""

    row: int
    loc: str
    msg: str
    value: str | None = None
    raw: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "loc": self.loc, "msg": self.msg}
        if self.value is not None:
            out["value"] = self.value
        return out


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
    numbers: list[int] = field(default_factory=list)
    """The row number of every row of the request's table, kept or not."""

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
    given: Sequence[int] | None = None,
) -> Converted:
    """Typed target columns of `table`; rows with a non-conformant typed value or a missing required
    one are left out, each with a RowError naming the column and the value (and carrying the raw row)."""
    numbers = row_numbers(table, given)
    errors: list[RowError] = []
    bad = pa.array([False] * table.num_rows, pa.bool_())
    typed: dict[str, pa.Array] = {}
    for name, col in _label_columns(kind, table).items():
        if not _NAME.match(name) or name in BOOKKEEPING:
            msg = f"label name {name!r} is not usable as a column name (lower-case letters, digits, '_', not finops_*)"
            bad = _reject(bad, pc.is_valid(col), name, _fixed(msg), col, numbers, errors)
            continue
        ctype = types.get(name, STRING)
        if ctype == OBJECT:
            typed[name] = _tags(focus_values.nulls(col))
        elif ctype == DOUBLE:
            typed[name], wrong = by_distinct(col, focus_values.numbers)
            bad = _reject(bad, wrong, name, _why(name, "number"), col, numbers, errors)
        elif ctype == TIMESTAMP:
            typed[name], wrong = by_distinct(col, focus_values.timestamps)
            bad = _reject(bad, wrong, name, _why(name, "timestamp"), col, numbers, errors)
        else:
            typed[name] = focus_values.nulls(col)
    if kind == "generic":
        typed.update(_generic_value_columns(table))
    for name in required:
        missing = pc.is_null(typed[name]) if name in typed else pa.array([True] * table.num_rows, pa.bool_())
        empty = typed.get(name, pa.nulls(table.num_rows, pa.string()))
        bad = _reject(bad, missing, name, _fixed(f"{name} is required (the cell is empty or NULL)"), empty, numbers, errors)
    errors.sort(key=lambda e: e.row)
    if not errors:
        return Converted(typed, table.num_rows, errors, numbers, numbers)
    keep = pc.invert(bad)
    arrays = {n: pc.filter(a, keep) for n, a in typed.items()}
    kept = [n for n, k in zip(numbers, keep.to_pylist(), strict=True) if k]
    return Converted(arrays, len(kept), _with_raw(errors, table, numbers), kept, numbers)


def row_numbers(table: pa.Table, given: Sequence[int] | None) -> list[int]:
    """The source's row numbers (`__row__`) when the records carry them, else `given`, else the index."""
    if given is None and ROW_COLUMN in table.column_names:
        rows = pc.cast(table.column(ROW_COLUMN).combine_chunks(), pa.int64())
        if rows.null_count == 0:
            return list(rows.to_pylist())
    return list(given) if given is not None else list(range(table.num_rows))


def _fixed(msg: str) -> Callable[[Any], str]:
    return lambda _value: msg


def _why(name: str, kind: str) -> Callable[[Any], str]:
    return lambda value: focus_values.describe(name, value, kind)


def _with_raw(errors: list[RowError], table: pa.Table, numbers: list[int]) -> list[RowError]:
    """Attach each rejected row's raw labels (as received), so it can be fixed and replayed."""
    index = {n: i for i, n in enumerate(numbers)}
    wanted = sorted({index[e.row] for e in errors if e.row in index})
    labels = [c for c in table.column_names if not (c.startswith("__") and c.endswith("__"))]
    raws = dict(zip(wanted, table.select(labels).take(pa.array(wanted, pa.int64())).to_pylist(), strict=True)) if wanted else {}
    return [RowError(e.row, e.loc, e.msg, e.value, _present(raws.get(index.get(e.row, -1)))) for e in errors]


def _present(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if raw is None else {k: v for k, v in raw.items() if v is not None}


def by_distinct(col: pa.Array, parse: Callable[[pa.Array], tuple[pa.Array, pa.Array]]) -> tuple[pa.Array, pa.Array]:
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
            obj = None if json_limits.too_deep(stripped) else json.loads(stripped)
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


def _reject(
    bad: pa.Array, mask: pa.Array, name: str, why: Callable[[Any], str], col: pa.Array, numbers: list[int],
    errors: list[RowError],
) -> pa.Array:
    """Record one error per newly rejected row (its value named) and return the updated rejection mask."""
    mask = pc.fill_null(mask, False)
    new = pc.and_(mask, pc.invert(bad))
    idx = pc.indices_nonzero(new)
    if len(idx):
        values = pc.take(col, idx).to_pylist()
        for i, value in zip(idx.to_pylist(), values, strict=True):
            shown = None if value is None else str(value)
            errors.append(RowError(numbers[i], name, why(value), shown))
    return pc.or_(bad, mask)
