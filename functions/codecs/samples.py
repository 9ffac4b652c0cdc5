"""Source table batches -> the sample table (contract: `__name__`, `__value__`, label columns).

Krateo's naming rules (spec §5.6, §13 items 19-22), vectorised with pyarrow.compute: cost ->
`billed_cost` valued by BilledCost with `x_` columns dropped; resource -> lower(column 1) with
spaces as `_`, valued by column 3; generic -> generic.metricName valued by valueColumnIndex.
Every kept column is a label, the value column too; `Tags` columns are rewritten; rows whose value
does not parse as a float (Go's ParseFloat rules, hex floats aside) are dropped and counted.
Invalid names are InvalidInput listing every bad one (Krateo's exporter crashed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from functions.errors import FieldError, InvalidInput
from functions.models.crs import Generic

NAME_COL, VALUE_COL = "__name__", "__value__"
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FLOAT = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))$"
_INF_LITERAL = r"(?i)inf"


@dataclass
class SampleStats:
    """Filled while `to_samples` is consumed: rows kept and rows dropped (unparsable value)."""

    rows: int = 0
    dropped: int = 0


def parse_values(col: pa.Array) -> pa.Array:
    """float64 of each cell; null where Go's ParseFloat fails (syntax, or overflow to ±Inf)."""
    col = col.cast(pa.string())
    ok = pc.fill_null(pc.match_substring_regex(col, _FLOAT), False)
    values = pc.cast(pc.if_else(ok, col, pa.scalar(None, pa.string())), pa.float64())
    overflow = pc.and_(pc.is_inf(values), pc.invert(pc.match_substring_regex(col, _INF_LITERAL)))
    return pc.if_else(pc.fill_null(overflow, False), pa.scalar(None, pa.float64()), values)


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


def _plan(names: list[str], metric_type: str, generic: Generic | None) -> _Plan:
    if metric_type == "cost":
        from functions.codecs.sources import require_billed_cost

        labels = [i for i, n in enumerate(names) if not n.startswith("x_")]
        plan = _Plan(require_billed_cost(names), labels, "billed_cost")
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


def _convert(batch: pa.RecordBatch, plan: _Plan, schema: pa.Schema) -> tuple[pa.RecordBatch, int]:
    values = parse_values(batch.column(plan.value_index))
    keep = pc.is_valid(values)
    batch, values = batch.filter(keep), values.filter(keep)
    dropped = len(keep) - batch.num_rows
    if plan.name is None:
        names = pc.replace_substring(pc.utf8_lower(batch.column(1).cast(pa.string())), " ", "_")
        check_metric_names(pc.unique(names).to_pylist())
    else:
        names = pa.repeat(pa.scalar(plan.name, pa.string()), batch.num_rows)
    labels = []
    for i in plan.labels:
        col = batch.column(i).cast(pa.string())
        labels.append(rewrite_tags(col) if "Tags" in batch.schema.names[i] else col)
    return pa.RecordBatch.from_arrays([names, values, *labels], schema=schema), dropped


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
            source, plan = batch.schema, _plan(batch.schema.names, metric_type, generic)
            fields = [pa.field(NAME_COL, pa.string(), False), pa.field(VALUE_COL, pa.float64())]
            out = pa.schema(fields + [pa.field(source.names[i], pa.string()) for i in plan.labels])
        assert plan is not None and out is not None
        result, dropped = _convert(batch, plan, out)
        stats.rows += result.num_rows
        stats.dropped += dropped
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
