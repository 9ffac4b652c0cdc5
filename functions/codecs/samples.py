"""Source table batches -> the sample table (contract: `__name__`, `__value__`, label columns).

Krateo's naming rules (finops-prometheus-exporter's CSV-to-gauge step), vectorised with pyarrow.compute: cost ->
`billed_cost` valued by BilledCost with `x_` columns dropped; resource -> lower(column 1) with
spaces as `_`, valued by column 3; generic -> generic.metricName valued by valueColumnIndex.
Every kept column is a label, the value column too; `Tags` columns are rewritten. The value follows
the shared FOCUS cell rules (functions.codecs.focus_values). A row whose value is NULL or does not
parse is NOT dropped (Krateo dropped it silently): it stays in the sample table with a null
`__value__` and its text intact in the value's label, so the database handler stores it in the
rejects with its reason; the exposition text leaves it out. `__row__` is each row's number in the
source (1-based, counted across pages). Invalid names are InvalidInput listing every bad one
(Krateo's exporter crashed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from functions.codecs import focus_values
from functions.errors import FieldError, InvalidInput
from functions.models.crs import Generic

NAME_COL, VALUE_COL, ROW_COL = "__name__", "__value__", "__row__"
FIRST_REASONS = 5
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class SampleStats:
    """Filled while `to_samples` is consumed: every source row counted, valued or not.

    `rows` = rows received (all in the sample table); `rejected` = rows without a usable value
    (NULL, or not a FOCUS number), with the first few reasons."""

    rows: int = 0
    rejected: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)
    skipped_columns: list[str] = field(default_factory=list)
    """FOCUS `x_` columns whose names cannot be labels (e.g. with spaces): left out and named here."""


def rewrite_tags(col: pa.Array) -> pa.Array:
    """Krateo's Tags rewrite: drop `{`, `}`, `"`; `=` -> `:`; `,` -> `;`."""
    for char in ("{", "}", '"'):
        col = pc.replace_substring(col, char, "")  # plain replaces: ~6x faster than one regex
    return pc.replace_substring(pc.replace_substring(col, "=", ":"), ",", ";")


def check_label_names(names: list[str]) -> None:
    bad = [
        FieldError(name, "label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __")
        for name in names
        if not LABEL_NAME.match(name) or name.startswith("__")
    ]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            bad.append(FieldError(name, "duplicate label name"))
        seen.add(name)
    if bad:
        raise InvalidInput(f"invalid label names: {', '.join(repr(e.loc) for e in bad)}", bad)


def check_metric_names(names: Iterable[str]) -> None:
    bad = [FieldError(n, "metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*") for n in names if not METRIC_NAME.match(n)]
    if bad:
        raise InvalidInput(f"invalid metric names: {', '.join(repr(e.loc) for e in bad)}", bad)


@dataclass(frozen=True)
class _Plan:
    """What one schema means for a metric type: value column, kept label columns, name."""

    value_index: int
    labels: list[int]
    name: str | None  # None: per row from column 1 (resource)


def _plan(names: list[str], metric_type: str, generic: Generic | None, stats: SampleStats) -> _Plan:
    if metric_type == "cost":
        from functions.codecs.sources import require_billed_cost

        # Every column is a label, FOCUS custom `x_` columns too (Krateo dropped them: their data was
        # lost). An x_ name that cannot be a label (spaces, dots) is left out and reported, not fatal.
        odd = [n for n in names if n.startswith("x_") and not LABEL_NAME.match(n)]
        stats.skipped_columns = odd
        plan = _Plan(require_billed_cost(names), [i for i, n in enumerate(names) if n not in odd], "billed_cost")
    elif metric_type == "resource":
        if len(names) < 4:
            raise InvalidInput(f"resource payload needs at least 4 columns, got {len(names)}")
        plan = _Plan(3, list(range(len(names))), None)
    elif metric_type == "generic":
        if generic is None:
            raise InvalidInput("generic {metricName, valueColumnIndex} is required for metricType generic")
        idx = generic.value_column_index
        if not 0 <= idx < len(names):
            raise InvalidInput(
                f"valueColumnIndex {idx} is out of range: the payload has {len(names)} columns",
                [FieldError("generic.valueColumnIndex", f"must be in 0..{len(names) - 1}")],
            )
        plan = _Plan(idx, list(range(len(names))), generic.metric_name)
    else:
        raise InvalidInput(f"unknown metric type {metric_type!r}", [FieldError("metricType", "cost, resource or generic")])
    check_label_names([names[i] for i in plan.labels])
    if plan.name is not None:
        check_metric_names([plan.name])
    return plan


def _convert(batch: pa.RecordBatch, plan: _Plan, schema: pa.Schema, first_row: int, stats: SampleStats) -> pa.RecordBatch:
    raw = batch.column(plan.value_index)
    values, wrong = focus_values.numbers(raw)
    _count_rejected(raw, values, wrong, batch.schema.names[plan.value_index], first_row, stats)
    if plan.name is None:
        names = pc.replace_substring(pc.utf8_lower(batch.column(1).cast(pa.string())), " ", "_")
        check_metric_names(pc.unique(names).to_pylist())
    else:
        names = pa.repeat(pa.scalar(plan.name, pa.string()), batch.num_rows)
    labels = []
    for i in plan.labels:
        col = batch.column(i).cast(pa.string())
        labels.append(rewrite_tags(col) if "Tags" in batch.schema.names[i] else col)
    rows = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
    return pa.RecordBatch.from_arrays([names, values, rows, *labels], schema=schema)


def _count_rejected(raw: pa.Array, values: pa.Array, wrong: pa.Array, column: str, first_row: int, stats: SampleStats) -> None:
    """Rows with no usable value: counted, and the first few described (row, column, value, reason)."""
    missing = pc.is_null(values)
    count = pc.sum(pc.cast(missing, pa.int64())).as_py() or 0
    stats.rejected += count
    if not count or len(stats.reasons) >= FIRST_REASONS:
        return
    idx = pc.indices_nonzero(missing).to_pylist()[: FIRST_REASONS - len(stats.reasons)]
    for i in idx:
        value = raw[i].as_py()
        why = (focus_values.describe(column, value, "number") if wrong[i].as_py()
               else f"{column} is required (the cell is empty or NULL)")
        stats.reasons.append({"row": first_row + i, "loc": column, "value": value, "msg": why})


def to_samples(
    batches: Iterable[pa.RecordBatch],
    metric_type: str,
    generic: Generic | None,
    config_ref: str,
    *,
    stats: SampleStats | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream sample-table batches. cost and generic have one family, so they stream as they come;
    resource has a name per row, so its (small) payload is collected and stably sorted by name.

    Schema metadata: finops.metric_type, finops.config, finops.created (one per call) and
    finops.rows (rows in that batch; the snapshot writer knows the total, also in `stats`).
    """
    stats = stats if stats is not None else SampleStats()
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {"finops.metric_type": metric_type, "finops.config": config_ref, "finops.created": created}
    converted: Iterable[pa.RecordBatch] = _converted(batches, metric_type, generic, stats)
    if metric_type == "resource":
        converted = _sorted_by_name(list(converted))
    for batch in converted:
        yield batch.replace_schema_metadata({**meta, "finops.rows": str(batch.num_rows)})


def _converted(
    batches: Iterable[pa.RecordBatch], metric_type: str, generic: Generic | None, stats: SampleStats
) -> Iterator[pa.RecordBatch]:
    plan: _Plan | None = None
    source: pa.Schema | None = None
    out: pa.Schema | None = None
    for batch in batches:
        if source is None or not batch.schema.equals(source):
            source, plan = batch.schema, _plan(batch.schema.names, metric_type, generic, stats)
            fields = [pa.field(NAME_COL, pa.string(), False), pa.field(VALUE_COL, pa.float64()),
                      pa.field(ROW_COL, pa.int64(), False)]
            out = pa.schema(fields + [pa.field(source.names[i], pa.string()) for i in plan.labels])
        assert plan is not None and out is not None
        result = _convert(batch, plan, out, stats.rows + 1, stats)
        stats.rows += result.num_rows
        if result.num_rows:
            yield result


def _sorted_by_name(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    if not batches:
        return []
    table = pa.Table.from_batches(batches)
    order = pa.array(range(table.num_rows), pa.int64())
    keyed = table.append_column("__order__", order)
    idx = pc.sort_indices(keyed, sort_keys=[(NAME_COL, "ascending"), ("__order__", "ascending")])
    out: list[pa.RecordBatch] = table.take(idx).combine_chunks().to_batches()
    return out
