"""The null and format rules every ingest path applies to a cell, in one place (vectorised, pure).

Why one module: the exporter (the value of each sample), the database handler's `/upload` (every
typed column) and the FocusConfig path must agree on what a cell means, or a row that one path
stores is dropped by another and a total silently changes.

- **Null**: a cell that is empty, or exactly `NULL` or `null`, is SQL NULL in every column type
  (numbers and timestamps are trimmed first, so a blank or padded `NULL` is null there too; text is
  kept byte for byte otherwise). That is the FOCUS convention: the FOCUS project's sample and scenario files and
  provider exports write an absent value as a literal `NULL`. A NULL stays NULL: never 0.0.
- **Numbers**: plain or exponent notation (`12`, `-0.5`, `.25`, `1.2E-3`), surrounding spaces
  allowed. Currency symbols, thousands separators, spaces inside, `NaN` and `Inf` are not FOCUS
  numbers: the cell is rejected with its value named (guessing `"$10,000.00"` or `"1.234,56"` is how
  totals go wrong).
- **Timestamps**: RFC 3339 / ISO 8601 date-times with or without a zone (no zone = UTC), `T` or a
  space between date and time, optional seconds and fractions, and plain dates (`2025-04-01`).
  Locale dates (`4/1/25`, `01.04.2025`) are rejected.

Every parse returns the typed values and a mask of the cells that were present but not
conformant; `describe` turns one such cell into the message a user sees.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

NULL_LITERALS: tuple[str, ...] = ("", "NULL", "null")
"""Cells (after trimming spaces) that mean "no value" in every column type."""

NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
_TS_MS = pa.timestamp("ms")
_NULLS = pa.array(NULL_LITERALS, pa.string())

NUMBER_RULE = "FOCUS numbers are plain or exponent notation: no currency symbols, thousands separators or words"
TIMESTAMP_RULE = "FOCUS date-times are ISO 8601 / RFC 3339, e.g. 2025-04-01T00:00:00Z or 2025-04-01"


def nulls(col: pa.Array) -> pa.Array:
    """The column as strings with every null literal (empty, NULL, null) turned into a real null.

    Exact match, no trimming: one hash lookup per cell, and no copy when the column has none (most
    text columns), which keeps the bulk path's cost per column well under a millisecond per 50k rows."""
    text = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    literal = pc.is_in(text, value_set=_NULLS)
    if not pc.any(literal).as_py():
        return text
    return pc.if_else(literal, pa.scalar(None, pa.string()), text)


def numbers(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(float64 values, mask of present-but-not-a-number cells); null literals are null, not wrong."""
    text, absent = _trimmed(col)
    ok = pc.fill_null(pc.match_substring_regex(text, NUMBER_PATTERN), False)
    values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    finite = pc.fill_null(pc.is_finite(values), True)  # 1e999 overflows to inf: not a usable amount
    values = pc.if_else(finite, values, pa.scalar(None, pa.float64()))
    wrong = pc.invert(pc.or_(absent, pc.and_(ok, finite)))
    return values, pc.fill_null(wrong, False)


def timestamps(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(timestamp[ms] values in UTC, mask of present-but-not-a-timestamp cells)."""
    text, absent = _trimmed(col)
    s = pc.replace_substring_regex(text, r"^(\d{4}-\d{2}-\d{2})[ tT]", r"\1T")
    s = pc.replace_substring_regex(s, r"[zZ]$", "+0000")
    s = pc.replace_substring_regex(s, r"([+-]\d{2}):(\d{2})$", r"\1\2")
    frac = pc.struct_field(pc.extract_regex(s, r"\.(?P<f>\d+)"), [0])
    frac_ms = pc.cast(pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 3, "0"), 0, 3), pa.int64())
    s = pc.replace_substring_regex(s, r"\.\d+", "")
    parsed = [pc.cast(pc.strptime(s, format=f, unit="ms", error_is_null=True), pa.int64()) for f in _TIME_FORMATS]
    ms = pc.add(pc.coalesce(*parsed), pc.fill_null(frac_ms, 0))
    # strptime rolls impossible dates over (2025-02-29 -> 2025-03-01): a date that does not read back
    # as written is not a date (the row would land in the wrong day, even the wrong billing period).
    ms = pc.if_else(pc.fill_null(_same_day(s, ms), False), ms, pa.scalar(None, pa.int64()))
    ms = pc.if_else(absent, pa.scalar(None, pa.int64()), ms)
    wrong = pc.and_(pc.invert(absent), pc.is_null(ms))
    return pc.cast(ms, _TS_MS), pc.fill_null(wrong, False)


def _same_day(text: pa.Array, ms: pa.Array) -> pa.Array:
    """Whether the local date written in each cell is the date parsed (before its zone was applied)."""
    written = pc.utf8_slice_codeunits(text, 0, 10)
    offset = pc.extract_regex(text, r"(?P<sign>[+-])(?P<h>\d{2})(?P<m>\d{2})$")
    sign = pc.if_else(pc.equal(pc.struct_field(offset, [0]), "-"), -1, 1)
    minutes = pc.add(pc.multiply(pc.cast(pc.struct_field(offset, [1]), pa.int64()), 60),
                     pc.cast(pc.struct_field(offset, [2]), pa.int64()))
    local = pc.add(ms, pc.fill_null(pc.multiply(pc.multiply(sign, minutes), 60_000), 0))
    return pc.equal(pc.strftime(pc.cast(local, _TS_MS), format="%Y-%m-%d"), written)


def _trimmed(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(trimmed text, mask of absent cells: null, empty, NULL or null)."""
    text = pc.utf8_trim_whitespace(col if pa.types.is_string(col.type) else pc.cast(col, pa.string()))
    absent = pc.fill_null(pc.is_in(text, value_set=_NULLS), True)
    return text, pc.or_(absent, pc.is_null(text))


def describe(column: str, value: object, kind: str) -> str:
    """The reason a user reads for one rejected cell: the column, the value and the rule broken."""
    rule = NUMBER_RULE if kind == "number" else TIMESTAMP_RULE
    shown = repr(value)[:200]
    return f"{column}: {shown} is not a {'number' if kind == 'number' else 'timestamp'} ({rule})"
