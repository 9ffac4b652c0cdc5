"""Value conversion between CrateDB's wire values (JSON) and DuckDB/Arrow columns, and errors.

Why columnar: inserting row by row through DuckDB runs at ~1.3k rows/s, from Arrow at ~92k rows/s
(measured on 2 cores). Every conversion first tries pyarrow's C fast path on the whole column and falls
back to per-value Python only when a column mixes types; values that cannot be converted mark
their row as failed (CrateDB: rowcount -2) instead of failing the whole bulk.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from functions.storage.dialect import SqlError

_EPOCH = dt.datetime(1970, 1, 1)
_MS = dt.timedelta(milliseconds=1)
_INT = re.compile(r"-?\d+")
_MAP_TYPE = pa.map_(pa.string(), pa.string())
Bad = dict[int, str]


def to_arrow(values: Sequence[Any], duck_type: str, name: str) -> tuple[pa.Array, Bad]:
    """One insert column as an Arrow array typed for `duck_type`, plus the rows that failed."""
    t = duck_type.upper()
    if t == "VARCHAR":
        return _text(values), {}
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return _convert(values, pa.float64(), _to_float, name, "double precision")
    if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER"):
        return _convert(values, pa.int64(), _to_int, name, t.lower())
    if t.startswith("TIMESTAMP"):
        array, bad = _convert(values, pa.int64(), _to_epoch_ms, name, "timestamp")
        return array.cast(pa.timestamp("ms")), bad
    if t.startswith("MAP("):
        return _convert(values, _MAP_TYPE, _to_items, name, "object")
    if t == "BOOLEAN":
        return _convert(values, pa.bool_(), _to_bool, name, "boolean")
    try:
        return pa.array(values), {}
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _text(values), {}


def _text(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_to_text(v) for v in values], type=pa.string())


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _convert(
    values: Sequence[Any], typ: pa.DataType, one: Callable[[Any], Any], name: str, type_name: str
) -> tuple[pa.Array, Bad]:
    # objects: only dicts (of strings) take the C path; JSON text and non-string values go one by one
    if typ != _MAP_TYPE or all(v is None or type(v) is dict for v in values):
        try:
            return pa.array(values, type=typ), {}
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            pass
    out: list[Any] = []
    bad: Bad = {}
    for row, value in enumerate(values):
        try:
            out.append(None if value is None else one(value))
        except (ValueError, TypeError, OverflowError):
            out.append(None)
            shown = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            bad[row] = f"Cannot cast value `{shown[:200]}` to type `{type_name}` (column {name})"
    return pa.array(out, type=typ), bad


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("boolean")
    return float(value.strip()) if isinstance(value, str) else float(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean")
    number = _to_float(value)
    if not number.is_integer():
        raise ValueError("not an integer")
    return int(number)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "t", "1", "yes", "on"):
        return True
    if text in ("false", "f", "0", "no", "off"):
        return False
    raise ValueError(text)


def _to_epoch_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        return _parse_timestamp(value.strip())
    raise TypeError(type(value).__name__)


@functools.lru_cache(maxsize=65536)
def _parse_timestamp(text: str) -> int:
    """ISO-8601 (date, date-time, offset or Z) or an integer string -> epoch ms (UTC)."""
    if _INT.fullmatch(text):
        return int(text)
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return (parsed - _EPOCH) // _MS


def _to_items(value: Any) -> list[tuple[str, str | None]]:
    if isinstance(value, str):
        value = orjson.loads(value)
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return [(str(k), _to_text(v)) for k, v in value.items()]


def epoch_args(args: list[Any]) -> list[Any]:
    """Integers that look like epoch milliseconds (1973..5138) as datetimes; `args` if none do."""
    out = [
        _EPOCH + v * _MS if isinstance(v, int) and not isinstance(v, bool) and 10**11 <= abs(v) < 10**14 else v
        for v in args
    ]
    return args if out == args else out


# ------------------------------------------------------------------ results


def result_rows(table: pa.Table) -> tuple[list[str], list[Any], list[list[Any]]]:
    """A DuckDB result as CrateDB's cols/col_types/rows: timestamps as epoch ms, maps as objects."""
    columns: list[list[Any]] = []
    types: list[Any] = []
    for col, fld in zip(table.columns, table.schema, strict=True):
        values, type_id = _column_values(col, fld.type)
        columns.append(values)
        types.append(type_id)
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    return list(table.column_names), types, rows


def _column_values(col: pa.ChunkedArray, t: pa.DataType) -> tuple[list[Any], Any]:
    if isinstance(t, pa.ExtensionType):  # DuckDB's own types (VARINT, ...) travel as their storage
        col = pa.chunked_array([c.storage for c in col.chunks], t.storage_type)
        t = t.storage_type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        tz = t.tz if pa.types.is_timestamp(t) else None
        ms = pc.cast(col, pa.timestamp("ms", tz), safe=False)
        return pc.cast(ms, pa.int64()).to_pylist(), 11
    if pa.types.is_decimal(t):
        scale = t.scale
        return [_decimal(v, scale) for v in col.to_pylist()], 10 if scale == 0 else 6
    if pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        return [None if v is None else str(v) for v in col.to_pylist()], 4
    if _is_bytes(t):
        return [None if v is None else v.hex() for v in col.to_pylist()], 4
    if pa.types.is_map(t) and not _needs_walk(t.key_type) and not _needs_walk(t.item_type) \
            and pa.types.is_string(t.key_type):
        return [None if v is None else dict(v) for v in col.to_pylist()], 12  # tags: the common case, fast
    if _needs_walk(t):
        type_id = _type_id(t)
        col, t = _nested_epoch_ms(col, t)
        return [_json_value(v, t) for v in col.to_pylist()], type_id
    return col.to_pylist(), _type_id(t)


def _nested_epoch_ms(col: pa.ChunkedArray, t: pa.DataType) -> tuple[pa.ChunkedArray, pa.DataType]:
    """Timestamps and dates inside lists and structs cast to epoch ms by Arrow, as top-level ones are
    (Python datetimes cannot hold DuckDB's `infinity`); the column unchanged where Arrow cannot."""
    as_ms = _temporal_as(t, "ms")
    if as_ms == t:
        return col, t
    try:
        ints = _temporal_as(t, "int")
        return pc.cast(pc.cast(col, as_ms, safe=False), ints, safe=False), ints
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return col, t


def _temporal_as(t: pa.DataType, to: str) -> pa.DataType:
    """`t` with every timestamp and date in it as timestamp[ms] (to="ms") or int64 (to="int")."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if to == "int":
            return pa.int64()
        return pa.timestamp("ms", t.tz if pa.types.is_timestamp(t) else None)
    if pa.types.is_list(t):
        return pa.list_(_temporal_as(t.value_type, to))
    if pa.types.is_large_list(t):
        return pa.large_list(_temporal_as(t.value_type, to))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_temporal_as(t.value_type, to), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _temporal_as(f.type, to), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_temporal_as(t.key_type, to), _temporal_as(t.item_type, to))
    return t


def _needs_walk(t: pa.DataType) -> bool:
    """Whether Arrow's Python values of `t` are not yet what JSON carries (see `_json_value`)."""
    if pa.types.is_struct(t):
        return any(_needs_walk(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _needs_walk(t.value_type)
    if pa.types.is_dictionary(t):
        return _needs_walk(t.value_type)
    return not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t)
                or pa.types.is_floating(t) or pa.types.is_null(t)
                or (pa.types.is_integer(t) and not pa.types.is_uint64(t)))


def _is_bytes(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
                or pa.types.is_binary_view(t))


def _json_value(value: Any, t: pa.DataType) -> Any:
    """A value inside a list, struct or map as JSON can carry it, the way a top-level column is.

    BLOBs as hex, timestamps and dates as epoch ms, decimals as numbers, times and intervals as
    text, maps as objects with text keys: orjson cannot encode bytes, Decimal or non-text keys,
    and an answer it cannot encode must never become an HTML 500.
    """
    if value is None:
        return None
    if isinstance(t, pa.ExtensionType):
        t = t.storage_type
    if pa.types.is_map(t):
        return {_key(k): _json_value(v, t.item_type) for k, v in value}
    if pa.types.is_struct(t):
        return {f.name: _json_value(value.get(f.name), f.type) for f in t}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return [_json_value(v, t.value_type) for v in value]
    if pa.types.is_decimal(t):
        return _decimal(value, t.scale)
    if pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        return str(value)
    return _plain(value)


def _key(key: Any) -> str:
    plain = _plain(key)
    return plain if isinstance(plain, str) else orjson.dumps(plain).decode()


def _plain(value: Any) -> Any:
    """One scalar as a JSON value (types known only by their Python value: union members and the like)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return (value - _EPOCH) // _MS
    if isinstance(value, dt.date):
        return (dt.datetime(value.year, value.month, value.day) - _EPOCH) // _MS
    if isinstance(value, Decimal):
        return _decimal(value, 0 if value == value.to_integral_value() else 1)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)  # beyond JSON's 64-bit integers (HUGEINT): exact as text
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # times, intervals, UUIDs: as text


def _decimal(value: Decimal | None, scale: int) -> float | int | str | None:
    if value is None:
        return None
    if scale != 0:
        return float(value)
    whole = int(value)
    return whole if -(2**63) <= whole < 2**63 else str(whole)  # HUGEINT beyond 64 bits: exact as text


def _type_id(t: pa.DataType) -> Any:
    """CrateDB's `col_types` ids (HTTP endpoint docs)."""
    if pa.types.is_null(t):
        return 0
    if pa.types.is_boolean(t):
        return 3
    if pa.types.is_float64(t):
        return 6
    if pa.types.is_floating(t):
        return 7
    if pa.types.is_int16(t) or pa.types.is_int8(t):
        return 8
    if pa.types.is_int32(t):
        return 9
    if pa.types.is_integer(t):
        return 10
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return 12
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return 11
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [100, _type_id(t.value_type)]
    return 4


# ------------------------------------------------------------------ errors

_MISSING_TABLE = re.compile(r'Table with name "?([^ "]+)"? does not exist')
_MISSING_COLUMN = re.compile(r'(?:Referenced column|column named) "?([^ "]+)"?')


def sql_error(exc: duckdb.Error) -> SqlError:
    """A DuckDB error as the CrateDB error a client would see for the same mistake."""
    text = str(exc).split("\n", 1)[0]
    detail = text.split(": ", 1)[1] if ": " in text else text
    if isinstance(exc, duckdb.CatalogException):
        if m := _MISSING_TABLE.search(text):
            return SqlError(f"RelationUnknown[Relation 'doc.{m.group(1)}' unknown]", 4041)
        if "already exists" in text:
            return SqlError(f"RelationAlreadyExists[{detail}]", 4093)
        if "Schema with name" in text:
            return SqlError(f"SchemaUnknownException[{detail}]", 4045)
        return SqlError(f"SQLParseException[{detail}]", 4000)
    if isinstance(exc, duckdb.BinderException) and (m := _MISSING_COLUMN.search(text)):
        return SqlError(f"ColumnUnknownException[Column {m.group(1)} unknown]", 4043)
    if isinstance(exc, duckdb.ConstraintException):
        return SqlError(f"DuplicateKeyException[{detail}]", 4091)
    if isinstance(exc, duckdb.PermissionException):  # the engine is closed: files, extensions, settings
        return SqlError(f"UnsupportedFeatureException[{detail}; the embedded database reads no files and "
                        "loads no extensions]", 4000)
    if isinstance(exc, duckdb.ParserException | duckdb.BinderException | duckdb.ConversionException
                  | duckdb.InvalidInputException | duckdb.NotImplementedException | duckdb.OutOfRangeException
                  | duckdb.TypeMismatchException | duckdb.DependencyException):
        return SqlError(f"SQLParseException[{detail}]", 4000)
    return SqlError(f"SQLActionException[{detail}]", 5000)
