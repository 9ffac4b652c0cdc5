"""FOCUS conformance findings for a cost table: the specification's rules that decide whether totals add up.

Report-only, pure and vectorised (pyarrow.compute, one pass per checked column): findings say what a
file gets wrong so its owner can fix it; they never block ingestion (the upload path stores what it
can and records the findings beside the rows).

Input: one column per FOCUS column, original FOCUS names or lower-cased ones (matched ignoring
case; the first of two names equal but for case wins), values as text or Arrow nulls. Empty cells
and the literal `NULL` / `null` are nulls, as everywhere else (functions.codecs.focus_values), and
numbers follow the upload path's rule, so a finding names exactly the cells ingestion rejects. An
optional integer column `__row__` holds each row's source row number (1-based); without it a
row's number is its position + 1.

Rules, each checked against the catalogue (functions.models.focus_columns) for one FOCUS version:
- `FOCUS-<Column>-present` (error): a Mandatory column is missing. The message names an old column
  the file has instead (ProviderName for ServiceProviderName in 1.3, UsageQuantity for
  ConsumedQuantity, ...).
- `FOCUS-<Column>-recommended` (warning): a Recommended column without a provider condition
  (ChargeFrequency, ServiceSubcategory, InvoiceId) is missing.
- `FOCUS-<Column>-not-null` (error): a column that does not allow nulls has null cells (checked
  whenever the column is present: the rule binds every column that has it, not only mandatory ones).
- `FOCUS-ChargeDescription-should-not-be-null` (warning).
- `FOCUS-<Column>-allowed-values` (error): ChargeCategory, ChargeClass, ChargeFrequency,
  PricingCategory, CommitmentDiscountStatus, CommitmentDiscountCategory, CapacityReservationStatus,
  ServiceCategory hold a value the version does not allow (values are case-sensitive).
- `FOCUS-<Column>-numeric` (error): a Decimal column (BilledCost, EffectiveCost, ListCost,
  ContractedCost, quantities, unit prices) holds something that is not a plain or exponent-notation
  number.
- `FOCUS-<Column>-datetime` (error): a period column holds something that is not an ISO 8601 date-time.
- `FOCUS-ChargePeriod-start-before-end` / `FOCUS-BillingPeriod-start-before-end` (error): the start
  is not before the end where both parse (an inclusive start and exclusive end that meet or cross
  bound an empty period, so the row's cost belongs to no time).

Version: "1.0" .. "1.3", or None to detect it from the header with
functions.models.focus_columns.detect_version: the highest version one of whose new columns is
present (ServiceProviderName, HostProviderName, ContractApplied or Allocated* -> 1.3; InvoiceId,
BillingAccountType, SubAccountType, PricingCurrency* -> 1.2; SkuMeter, SkuPriceDetails,
CapacityReservation*, CommitmentDiscountQuantity/Unit, ServiceSubcategory -> 1.1), else 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from functions.codecs import focus_values
from functions.models import focus_columns as fc

Severity = Literal["error", "warning"]
ROW_COLUMN = "__row__"
EXAMPLES = 5
PERIODS: tuple[tuple[str, str, str], ...] = (
    ("ChargePeriod", "ChargePeriodStart", "ChargePeriodEnd"),
    ("BillingPeriod", "BillingPeriodStart", "BillingPeriodEnd"),
)


@dataclass(frozen=True)
class Finding:
    """One broken rule: how many rows break it, the first few (row number, offending value), and why."""

    rule: str
    column: str
    severity: Severity
    count: int
    examples: tuple[tuple[int, str | None], ...]
    message: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, examples as [{"row", "value"}] (what the CLI prints and the findings table stores)."""
        return {"rule": self.rule, "column": self.column, "severity": self.severity, "count": self.count,
                "examples": [{"row": r, "value": v} for r, v in self.examples], "message": self.message,
                "version": self.version}


def merge(seen: list[Finding], more: list[Finding]) -> list[Finding]:
    """Findings of one snapshot checked batch by batch: counts add up, the first examples are kept.

    A presence rule (a column missing) is per snapshot, not per row: it is kept once."""
    by_key = {(f.rule, f.column): f for f in seen}
    for f in more:
        old = by_key.get((f.rule, f.column))
        if old is None:
            by_key[(f.rule, f.column)] = f
        elif old.examples or f.examples:
            examples = (old.examples + f.examples)[:EXAMPLES]
            by_key[(f.rule, f.column)] = Finding(old.rule, old.column, old.severity, old.count + f.count, examples,
                                                 old.message, old.version)
    return list(by_key.values())


def has_errors(findings: list[Finding]) -> bool:
    """Whether a must-rule is broken: what `finops validate` turns into exit status 1."""
    return any(f.severity == "error" for f in findings)


def resolve_version(version: str | None, names: list[str]) -> fc.FocusVersion:
    """The version to check against: the one given, else the one the header looks like."""
    if version is None:
        return fc.detect_version(names)
    if version not in fc.VERSIONS:
        raise ValueError(f"unknown FOCUS version {version!r}: expected one of {', '.join(fc.VERSIONS)}")
    return version


def check(table: pa.Table, version: str | None = None) -> list[Finding]:
    """Every finding of `table` against FOCUS `version` (None: detected), in a stable order."""
    names = [n for n in table.column_names if n != ROW_COLUMN]
    v = resolve_version(version, names)
    ctx = _Context(table, names, v)
    rules = (_presence, _nulls, _allowed, _numbers, _datetimes, _periods)
    return [f for rule in rules for f in rule(ctx) if f is not None]


class _Context:
    """The table, its columns by lower-cased name, and each checked column's text, null mask and times."""

    def __init__(self, table: pa.Table, names: list[str], version: fc.FocusVersion) -> None:
        self.table, self.version, self.rows = table, version, table.num_rows
        self.by_lower: dict[str, str] = {}
        for name in names:
            self.by_lower.setdefault(name.lower(), name)
        self._text: dict[str, pa.Array] = {}
        self._null: dict[str, pa.Array] = {}
        self._times: dict[str, tuple[pa.Array, pa.Array]] = {}
        self._row_numbers = table.column(ROW_COLUMN).combine_chunks() if ROW_COLUMN in table.column_names else None

    def columns(self) -> Iterator[fc.FocusColumn]:
        """The version's catalogued columns that the table has."""
        return (c for c in fc.columns_in(self.version) if c.name.lower() in self.by_lower)

    def text(self, column: str) -> pa.Array:
        """The column as one string array, as written (examples show the cell as the file has it)."""
        if column not in self._text:
            raw = self.table.column(self.by_lower[column.lower()]).combine_chunks()
            self._text[column] = raw if pa.types.is_string(raw.type) else pc.cast(raw, pa.string())
        return self._text[column]

    def null(self, column: str) -> pa.Array:
        """Mask of the null cells: Arrow nulls and the null literals (empty, NULL, null, spaces around)."""
        if column not in self._null:
            self._null[column] = null_mask(self.text(column))
        return self._null[column]

    def times(self, column: str) -> tuple[pa.Array, pa.Array]:
        """(timestamp[ms], wrong mask), parsed once per distinct text: periods repeat on every row."""
        if column not in self._times:
            enc = pc.dictionary_encode(self.text(column))
            values, wrong = focus_values.timestamps(enc.dictionary)
            self._times[column] = (pc.take(values, enc.indices), pc.fill_null(pc.take(wrong, enc.indices), False))
        return self._times[column]

    def finding(self, rule: str, column: str, severity: Severity, mask: pa.Array, message: str,
                shown: Callable[[pa.Array], list[str | None]] | None = None) -> Finding | None:
        """A finding for the rows where `mask` is true (None when there are none)."""
        count = pc.sum(mask).as_py() or 0
        if not count:
            return None
        idx = pc.indices_nonzero(mask).slice(0, EXAMPLES)
        rows = (pc.take(self._row_numbers, idx).to_pylist() if self._row_numbers is not None
                else [i + 1 for i in idx.to_pylist()])
        values = shown(idx) if shown else pc.take(self.text(column), idx).to_pylist()
        examples = tuple((int(r) if r is not None else i + 1, v)
                         for r, i, v in zip(rows, idx.to_pylist(), values, strict=True))
        return Finding(rule, column, severity, int(count), examples, message, self.version)


_LITERALS = pa.array(focus_values.NULL_LITERALS, pa.string())
_LITERAL_MAX_BYTES = 16
"""Only cells this short are trimmed to look for a padded NULL: sparing the copy of long text keeps a
million-row check within seconds (a literal padded past 16 bytes is taken as text)."""
_NUMBER = r"^[\s\p{Z}]*" + focus_values.NUMBER_PATTERN[1:-1] + r"[\s\p{Z}]*$"
"""focus_values' number rule with its trimming folded in, so a column is matched without a copy."""


def null_mask(text: pa.Array) -> pa.Array:
    """True where a cell is null: an Arrow null, or empty / NULL / null once spaces are trimmed."""
    short = pc.fill_null(pc.less_equal(pc.binary_length(text), _LITERAL_MAX_BYTES), False)
    if pc.sum(short).as_py() == len(text) - text.null_count:
        return pc.or_(pc.is_null(text), pc.is_in(pc.utf8_trim_whitespace(text), value_set=_LITERALS))
    literal = pc.is_in(pc.utf8_trim_whitespace(text.filter(short)), value_set=_LITERALS)
    return pc.replace_with_mask(pc.is_null(text), short, literal)


def number_wrong(text: pa.Array, null: pa.Array) -> pa.Array:
    """True where a present cell is not a FOCUS number (or overflows to infinity, like 1e999).

    Fast path: when Arrow's own float parser takes every present cell and none is infinite or NaN,
    the column is clean (what it accepts is a subset of the number rule) and no regex runs.
    """
    present = text.filter(pc.invert(null))
    try:
        if pc.all(pc.is_finite(pc.cast(present, pa.float64()))).as_py() is not False:
            return pc.and_(null, False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    wrong = pc.invert(pc.or_(null, pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)))
    exponent = pc.and_(pc.invert(wrong), pc.fill_null(pc.match_substring(text, "e", ignore_case=True), False))
    if not pc.any(exponent).as_py():
        return wrong
    _, overflow = focus_values.numbers(text.filter(exponent))
    return pc.replace_with_mask(wrong, exponent, overflow)


def _presence(ctx: _Context) -> Iterator[Finding | None]:
    for c in fc.columns_in(ctx.version):
        if c.name.lower() in ctx.by_lower:
            continue
        if c.feature_level == "Mandatory":
            yield Finding(f"FOCUS-{c.name}-present", c.name, "error", ctx.rows, (),
                          f"{c.name} is mandatory in FOCUS {ctx.version} and the file has no such column"
                          + _instead(ctx, c), ctx.version)
        elif c.feature_level == "Recommended" and c.condition is None:
            yield Finding(f"FOCUS-{c.name}-recommended", c.name, "warning", ctx.rows, (),
                          f"{c.name} should be present in a FOCUS {ctx.version} file", ctx.version)


def _instead(ctx: _Context, column: fc.FocusColumn) -> str:
    """Why the column may be missing: an older name for it is there, or it is newer than the file."""
    if column.renamed_from and column.renamed_from.lower() in ctx.by_lower:
        return f"; it has {column.renamed_from}, which FOCUS {column.introduced} renamed to {column.name}"
    old = [d for d in fc.CATALOGUE if d.replaced_by == column.name and d.name.lower() in ctx.by_lower]
    if old:
        return f"; it has {old[0].name}, which FOCUS {old[0].deprecated} deprecates in favour of {column.name}"
    if column.since != "1.0":
        return f" (new in FOCUS {column.since}: is the file an older version?)"
    return ""


def _nulls(ctx: _Context) -> Iterator[Finding | None]:
    for c in ctx.columns():
        null = ctx.null(c.name)
        if not c.nullable:
            yield ctx.finding(f"FOCUS-{c.name}-not-null", c.name, "error", null,
                              f"{c.name} must not be null in FOCUS {ctx.version} (empty cells and NULL are null)")
        elif c.should_not_be_null:
            yield ctx.finding(f"FOCUS-{c.name}-should-not-be-null", c.name, "warning", null,
                              f"{c.name} should not be null in FOCUS {ctx.version}")


def _allowed(ctx: _Context) -> Iterator[Finding | None]:
    for c in ctx.columns():
        allowed = c.allowed_in(ctx.version)
        if not allowed:
            continue
        text = ctx.text(c.name)
        bad = pc.invert(pc.or_(ctx.null(c.name), pc.fill_null(pc.is_in(text, value_set=pa.array(allowed, pa.string())), False)))
        yield ctx.finding(f"FOCUS-{c.name}-allowed-values", c.name, "error", bad,
                          f"{c.name} must be one of {', '.join(allowed)} in FOCUS {ctx.version}"
                          + _value_hint(c, text, bad))


def _value_hint(column: fc.FocusColumn, text: pa.Array, bad: pa.Array) -> str:
    """A hint when the wrong values are a case slip or a value FOCUS renamed."""
    wrong = set(pc.unique(pc.filter(text, bad)).to_pylist()[:1000])
    renamed = fc.RENAMED_VALUES.get(column.name, {})
    old = sorted(v for v in wrong if v in renamed)
    if old:
        return "; " + ", ".join(f"{v!r} is now {renamed[v]!r}" for v in old)
    lower = {a.lower() for a in column.allowed_in("1.3") or column.allowed_in("1.0")}
    if any(str(v).lower() in lower for v in wrong):
        return " (values are case-sensitive)"
    return ""


def _numbers(ctx: _Context) -> Iterator[Finding | None]:
    for c in ctx.columns():
        if c.data_type == "Decimal":
            wrong = number_wrong(ctx.text(c.name), ctx.null(c.name))
            yield ctx.finding(f"FOCUS-{c.name}-numeric", c.name, "error", wrong,
                              f"{c.name} must be a number ({focus_values.NUMBER_RULE})")


def _datetimes(ctx: _Context) -> Iterator[Finding | None]:
    for c in ctx.columns():
        if c.data_type == "Date/Time":
            yield ctx.finding(f"FOCUS-{c.name}-datetime", c.name, "error", ctx.times(c.name)[1],
                              f"{c.name} must be a date-time ({focus_values.TIMESTAMP_RULE})")


def _periods(ctx: _Context) -> Iterator[Finding | None]:
    for period, start, end in PERIODS:
        if start.lower() not in ctx.by_lower or end.lower() not in ctx.by_lower:
            continue
        bad = pc.fill_null(pc.greater_equal(ctx.times(start)[0], ctx.times(end)[0]), False)

        def shown(idx: pa.Array, start: str = start, end: str = end) -> list[str | None]:
            pairs = zip(pc.take(ctx.text(start), idx).to_pylist(), pc.take(ctx.text(end), idx).to_pylist(), strict=True)
            return [f"{s} >= {e}" for s, e in pairs]

        yield ctx.finding(f"FOCUS-{period}-start-before-end", start, "error", bad,
                          f"{start} must be before {end}: the start is inclusive and the end exclusive, "
                          "so a period whose bounds meet or cross holds no time", shown)
