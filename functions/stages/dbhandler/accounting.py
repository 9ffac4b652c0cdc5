"""Every row accounted for: the rejects table and the per-run ledger that `/upload` keeps.

- `finops_rejects` (one table for every target, documented in docs/architecture.md): each rejected row with
  its target table, source, run, part, stage, row number, column, reason, offending value and the raw
  row as JSON text, so it can be fixed and replayed. One shared table rather than one per target: a
  user asks "what did this config lose?" in one query, and a target's own columns never change
  because of a bad row. Rows older than the retention (FINOPS_REJECTS_RETENTION_DAYS) are deleted
  when a later run of any source commits.
- `finops_ledger`: per (run, part, billing period, currency) the rows and BilledCost as received and
  as rejected; the commit adds one row per (period, currency) with the rows and BilledCost as
  stored, computed by the database from the target table. "The database equals the source" is then
  a query: received = stored + rejected, per period and currency (functions.storage.ledger reads it).

The tables and their SQL live in functions.storage.ledger (focus ingest writes them too); this
module decides what a part's rejects and figures are. Both are written per (table, run, part) by delete-then-insert, so a redelivered part changes nothing;
the stored figures are written inside the commit's atomic unit, so they exist exactly when the run's
rows do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from functions.clients.db import Database
from functions.codecs import focus_values
from functions.stages.dbhandler import columns
from functions.stages.dbhandler.columns import RowError
from functions.storage import ledger


def record_part(db: Database, key: ledger.PartKey, kind: str, table: pa.Table, numbers: Sequence[int],
                errors: Sequence[RowError], stage: str = "dbhandler", figures: list[list[Any]] | None = None) -> None:
    """Replace this part's rejects and received/rejected ledger rows now (idempotent per part)."""
    rejects = [ledger.Reject(e.row, e.loc, e.msg, e.value, e.raw) for e in _one_per_cell(errors)]
    ledger.record(db, key, stage, rejects, figures if figures is not None else received(kind, table, numbers, errors))


def part_statements(db: Database, key: ledger.PartKey, kind: str, table: pa.Table, numbers: Sequence[int],
                    errors: Sequence[RowError], stage: str = "dbhandler") -> list[tuple[str, Sequence[Any] | None]]:
    """The part's ledger statements for the caller's own atomic unit; rejected rows (if any) are
    recorded at once, so they exist before the run can commit."""
    figures = received(kind, table, numbers, errors)
    if errors:
        record_part(db, key, kind, table, numbers, errors, stage, figures)
        return []
    return ledger.part_statements(key, figures)


def received(kind: str, table: pa.Table, numbers: Sequence[int], errors: Sequence[RowError]) -> list[list[Any]]:
    """[period ms, currency, rows received, BilledCost received, rows rejected, BilledCost rejected] per
    (period, currency), from the rows as they arrived (a cost that does not parse counts as a row only).

    Records the codec refused before they became rows (no table row) count as rejected with an
    unknown period and currency. Vectorised, and repetitive columns parsed once per distinct value.
    """
    n = table.num_rows
    bad_rows = {e.row for e in errors}
    rows = pa.array(numbers, pa.int64())
    rejected = (pc.is_in(rows, value_set=pa.array(sorted(bad_rows), pa.int64())) if bad_rows
                else pa.repeat(pa.scalar(False), n))
    orphans = len(bad_rows) - (pc.sum(pc.cast(rejected, pa.int64())).as_py() or 0 if bad_rows else 0)
    if kind == "cost" and n:
        period = pc.cast(columns.by_distinct(_column(table, "billingperiodstart", n), focus_values.timestamps)[0], pa.int64())
        currency = focus_values.nulls(_column(table, "billingcurrency", n))
        cost = columns.by_distinct(_column(table, "billedcost", n), focus_values.numbers)[0]
    else:
        period, currency, cost = pa.nulls(n, pa.int64()), pa.nulls(n, pa.string()), pa.nulls(n, pa.float64())
    grouped = _group(period, currency, cost, rejected)
    if orphans:
        r, c, rr, rc = grouped.get((None, None), (0, 0.0, 0, 0.0))
        grouped[(None, None)] = (r + orphans, c, rr + orphans, rc)
    return [[p, cur, r, c, rr, rc] for (p, cur), (r, c, rr, rc) in sorted(grouped.items(), key=_order)]


def _one_per_cell(errors: Sequence[RowError]) -> list[RowError]:
    seen: set[tuple[int, str]] = set()
    out = []
    for e in errors:
        if (e.row, e.loc) not in seen:
            seen.add((e.row, e.loc))
            out.append(e)
    return out


def _column(table: pa.Table, lower: str, n: int) -> pa.Array:
    """The first column whose name equals `lower` ignoring case, else nulls (labels keep the source's case)."""
    for name in table.column_names:
        if name.lower() == lower:
            col = table.column(name).combine_chunks()
            return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    return pa.nulls(n, pa.string())


def _group(period: pa.Array, currency: pa.Array, cost: pa.Array, rejected: pa.Array,
           ) -> dict[tuple[Any, Any], tuple[int, float, int, float]]:
    """Counts and BilledCost sums per (period, currency), vectorised (a part has up to 50k rows)."""
    if not len(period):
        return {}
    zero = pa.scalar(0.0, pa.float64())
    tbl = pa.table({
        "p": period, "c": currency, "one": pa.repeat(pa.scalar(1, pa.int64()), len(period)),
        "v": pc.fill_null(cost, zero), "r": pc.cast(rejected, pa.int64()),
        "rv": pc.if_else(rejected, pc.fill_null(cost, zero), zero),
    })
    agg = tbl.group_by(["p", "c"], use_threads=False).aggregate([("one", "sum"), ("v", "sum"), ("r", "sum"), ("rv", "sum")])
    cols = [agg.column(k).to_pylist() for k in ("p", "c", "one_sum", "v_sum", "r_sum", "rv_sum")]
    return {(p, c): (rows, total, rrows, rtotal) for p, c, rows, total, rrows, rtotal in zip(*cols, strict=True)}


def _order(item: tuple[tuple[Any, Any], Any]) -> tuple[int, str]:
    (p, cur), _ = item
    return (p if p is not None else -1, cur or "")
