"""The accounting tables every upload writes (rejects, ledger) and the queries that read them.

The database handler writes them (functions.stages.dbhandler.accounting); the CLI, the metrics and
the demo read them here, so every reader agrees on what "the last run" and "received = stored +
rejected" mean. All SQL is CrateDB's dialect (the embedded engine translates it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from functions.clients.db import Database, DatabaseError
from functions.logs import get_logger
from functions.storage.dialect import quote_ident

log = get_logger("storage.ledger")

REJECTS_TABLE = "finops_rejects"
LEDGER_TABLE = "finops_ledger"
COMMIT_PART = -1
"""The ledger's part number for the stored figures written at commit."""

REJECTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (target_table TEXT, finops_source TEXT, finops_run TEXT, "
    "finops_part INTEGER, stage TEXT, row_number BIGINT, column_name TEXT, reason TEXT, value TEXT, raw TEXT, "
    "rejected_at TIMESTAMP)"
)
LEDGER_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (target_table TEXT, finops_source TEXT, finops_run TEXT, "
    "finops_part INTEGER, billingperiodstart TIMESTAMP, billingcurrency TEXT, rows_received BIGINT, "
    "billedcost_received DOUBLE, rows_rejected BIGINT, billedcost_rejected DOUBLE, rows_stored BIGINT, "
    "billedcost_stored DOUBLE, recorded_at TIMESTAMP)"
)
FINDINGS_TABLE = "finops_findings"
FINDINGS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {FINDINGS_TABLE} (target_table TEXT, finops_source TEXT, finops_run TEXT, "
    "focus_version TEXT, rule TEXT, column_name TEXT, severity TEXT, row_count BIGINT, examples TEXT, message TEXT, "
    "checked_at TIMESTAMP)"
)
_LEDGER_COLS = (
    "target_table, finops_source, finops_run, finops_part, billingperiodstart, billingcurrency, rows_received, "
    "billedcost_received, rows_rejected, billedcost_rejected, rows_stored, billedcost_stored, recorded_at"
)
_DAY_MS = 24 * 3600 * 1000
SUMMARY_COLUMNS = ("period", "currency", "rows_received", "billedcost_received", "rows_rejected", "billedcost_rejected",
                   "rows_stored", "billedcost_stored")


@dataclass(frozen=True)
class PartKey:
    """Which (table, source, run, part) a set of rejects and ledger rows belongs to."""

    table: str
    source: str | None
    run: str
    part: int


@dataclass(frozen=True)
class Reject:
    """One rejected row: its number in the source, the column at fault, why, the value, the raw row."""

    row: int
    column: str
    reason: str
    value: str | None = None
    raw: dict[str, Any] | None = None


def ensure_statements() -> list[tuple[str, Sequence[Any] | None]]:
    """Both tables exist: run in the same unit as the writes (no process cache that a dropped or
    restored table could make stale; `IF NOT EXISTS` costs nothing in the same round trip)."""
    return [(REJECTS_DDL, None), (LEDGER_DDL, None)]


def part_statements(key: PartKey, received: Sequence[Sequence[Any]], stored: Sequence[Sequence[Any]] = (),
                    ) -> list[tuple[str, Sequence[Any] | None]]:
    """The statements replacing one part's ledger rows and clearing its rejects (idempotent per
    (table, run, part)), for a caller to run in its own atomic unit (the tables must exist: `ensure`).

    `received`: [period ms, currency, rows, BilledCost, rows rejected, BilledCost rejected] per group;
    `stored`: [period ms, currency, rows stored, BilledCost stored] for a writer that commits at once.
    """
    where = "target_table = ? AND finops_run = ? AND finops_part = ?"
    args = [key.table, key.run, key.part]
    now = int(time.time() * 1000)
    rows = [[key.table, key.source, key.run, key.part, *g, 0, 0.0, now] for g in received]
    rows += [[key.table, key.source, key.run, key.part, p, c, 0, 0.0, 0, 0.0, n, total, now] for p, c, n, total in stored]
    # CrateDB's DELETE sees rows only after a refresh: without one, a retried part's first rows
    # would survive it and count twice (a no-op on the embedded engine).
    stmts: list[tuple[str, Sequence[Any] | None]] = [
        *ensure_statements(), (f"REFRESH TABLE {REJECTS_TABLE}", None), (f"REFRESH TABLE {LEDGER_TABLE}", None),
        (f"DELETE FROM {REJECTS_TABLE} WHERE {where}", args), (f"DELETE FROM {LEDGER_TABLE} WHERE {where}", args)]
    return stmts + [(f"INSERT INTO {LEDGER_TABLE} ({_LEDGER_COLS}) VALUES ({', '.join('?' * 13)})", row) for row in rows]


def record(db: Database, key: PartKey, stage: str, rejects: Sequence[Reject], received: Sequence[Sequence[Any]],
           stored: Sequence[Sequence[Any]] = ()) -> None:
    """Replace one part's rejects and ledger rows now (one atomic unit on the embedded engine,
    statement by statement on CrateDB), the rejects in one bulk insert after it (a retry converges)."""
    db.run_atomically(part_statements(key, received, stored))
    if rejects:
        now = int(time.time() * 1000)
        db.executemany(
            f"INSERT INTO {REJECTS_TABLE} (target_table, finops_source, finops_run, finops_part, stage, row_number, "
            "column_name, reason, value, raw, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[key.table, key.source, key.run, key.part, stage, r.row, r.column, r.reason, r.value,
              None if r.raw is None else orjson.dumps(r.raw, default=str).decode(), now] for r in rejects],
        )


def record_findings(db: Database, table: str, source: str | None, run: str, findings: Sequence[Mapping[str, Any]]) -> int:
    """Replace one run's FOCUS conformance findings (idempotent per (table, run)); how many were stored.

    Each finding: {rule, column, severity, count, examples: [{row, value}], message, version}."""
    db.execute(FINDINGS_DDL)
    db.execute(f"REFRESH TABLE {FINDINGS_TABLE}")  # CrateDB: a retry's DELETE must see the first try's rows
    db.execute(f"DELETE FROM {FINDINGS_TABLE} WHERE target_table = ? AND finops_run = ?", [table, run])
    now = int(time.time() * 1000)
    rows = [[table, source, run, str(f.get("version") or ""), str(f.get("rule")), str(f.get("column")),
             str(f.get("severity")), int(f.get("count") or 0), orjson.dumps(f.get("examples") or []).decode(),
             str(f.get("message") or ""), now] for f in findings]
    if rows:
        db.executemany(
            f"INSERT INTO {FINDINGS_TABLE} (target_table, finops_source, finops_run, focus_version, rule, column_name, "
            "severity, row_count, examples, message, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def stored_statements(target: str, kind: str, source: str | None, run: str, rows_from: str = ""
                      ) -> list[tuple[str, Sequence[Any] | None]]:
    """The commit's ledger rows: stored rows and BilledCost per (period, currency), counted by the
    database inside the commit's atomic unit.

    `rows_from`: a SELECT (one `?`: the run) of exactly the rows the commit inserts, when the caller
    has one cheaper to scan than the target (the embedded commit: the staged parts and the final
    part's registered payload, instead of rows just written into the transaction); else the run's
    rows are counted in the target."""
    t = quote_ident(target)
    head = f"INSERT INTO {LEDGER_TABLE} ({_LEDGER_COLS}) "
    rows = f"({rows_from}) AS stored_rows" if rows_from else f"{t} WHERE finops_run = ?"
    # One row always, even for a run that stored nothing (every row rejected, or an empty export):
    # it marks the run as committed, so "the last run" never falls back to an older, cleaner one.
    marker = (head + f"VALUES (?, ?, ?, {COMMIT_PART}, NULL, NULL, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP)", [target, source, run])
    if kind == "cost":
        select = (head + f"SELECT ?, ?, ?, {COMMIT_PART}, billingperiodstart, billingcurrency, 0, 0, 0, 0, COUNT(*), "
                  f"SUM(billedcost), CURRENT_TIMESTAMP FROM {rows} GROUP BY billingperiodstart, billingcurrency")
    else:
        select = head + f"SELECT ?, ?, ?, {COMMIT_PART}, NULL, NULL, 0, 0, 0, 0, COUNT(*), NULL, CURRENT_TIMESTAMP FROM {rows}"
    return [
        (f"REFRESH TABLE {LEDGER_TABLE}", None),
        (f"DELETE FROM {LEDGER_TABLE} WHERE target_table = ? AND finops_run = ? AND finops_part = {COMMIT_PART}", [target, run]),
        marker,
        (select, [target, source, run, run]),
    ]


_EXPIRED: dict[str, float] = {}
EXPIRE_EVERY_S = 600.0
"""Retention is counted in days: sweeping at most every ten minutes per process keeps two table
scans off most commits."""


def expire(db: Database, rejects_days: int, ledger_days: int) -> None:
    """Drop rejects, ledger and findings rows older than their retention (called after a commit)."""
    if time.monotonic() - _EXPIRED.get(db.url, -EXPIRE_EVERY_S) < EXPIRE_EVERY_S:
        return
    now = int(time.time() * 1000)
    try:
        db.execute(f"DELETE FROM {REJECTS_TABLE} WHERE rejected_at < ?", [now - rejects_days * _DAY_MS])
        db.execute(f"DELETE FROM {LEDGER_TABLE} WHERE recorded_at < ?", [now - ledger_days * _DAY_MS])
        if db.table_exists(FINDINGS_TABLE):
            db.execute(f"DELETE FROM {FINDINGS_TABLE} WHERE checked_at < ?", [now - ledger_days * _DAY_MS])
    except DatabaseError as exc:  # the run is committed: a failed sweep must not make the answer an error
        log.warning("retention sweep failed", extra={"error": exc.message})
        return
    _EXPIRED[db.url] = time.monotonic()


def run_summary(db: Database, table: str, run: str) -> list[dict[str, Any]]:
    """Per (period, currency) of one run: rows and BilledCost received, rejected and stored."""
    res = db.execute(
        "SELECT billingperiodstart, billingcurrency, SUM(rows_received), SUM(billedcost_received), SUM(rows_rejected), "
        f"SUM(billedcost_rejected), SUM(rows_stored), SUM(billedcost_stored) FROM {LEDGER_TABLE} "
        "WHERE target_table = ? AND finops_run = ? GROUP BY billingperiodstart, billingcurrency "
        "HAVING SUM(rows_received) > 0 OR SUM(rows_stored) > 0 "  # the commit's marker row alone is no group
        "ORDER BY billingperiodstart, billingcurrency",
        [table, run],
    )
    return [dict(zip(SUMMARY_COLUMNS, row, strict=True)) for row in res.rows]


def last_run(db: Database, source: str) -> tuple[str, str] | None:
    """(target table, run) of the latest committed run of `source`, or None."""
    if not db.table_exists(LEDGER_TABLE):
        return None
    res = db.execute(
        f"SELECT target_table, finops_run FROM {LEDGER_TABLE} WHERE finops_source = ? AND finops_part = {COMMIT_PART} "
        "ORDER BY recorded_at DESC LIMIT 1", [source])
    return (str(res.rows[0][0]), str(res.rows[0][1])) if res.rows else None


def rejects_of(db: Database, source: str, run: str | None, limit: int = 1000) -> list[dict[str, Any]]:
    """The rejected cells of one run of `source` (every retained run's when `run` is None)."""
    if not db.table_exists(REJECTS_TABLE):
        return []
    where, args = ("finops_source = ?", [source]) if run is None else ("finops_source = ? AND finops_run = ?", [source, run])
    res = db.execute(
        f"SELECT finops_run, target_table, stage, row_number, column_name, value, reason, raw, rejected_at FROM {REJECTS_TABLE} "
        f"WHERE {where} ORDER BY rejected_at DESC, row_number, column_name LIMIT {int(limit)}", args)
    return [dict(zip(res.cols, row, strict=True)) for row in res.rows]


def last_runs(db: Database) -> list[dict[str, Any]]:
    """Per source: its latest committed run's table, time (epoch ms) and rows received/stored/rejected."""
    if not db.table_exists(LEDGER_TABLE):
        return []
    res = db.execute(
        f"SELECT finops_source, target_table, finops_run, MAX(recorded_at) FROM {LEDGER_TABLE} "
        f"WHERE finops_part = {COMMIT_PART} GROUP BY finops_source, target_table, finops_run")
    latest: dict[str, tuple[str, str, int]] = {}
    for source, table, run, at in res.rows:
        key = str(source)
        if key not in latest or int(at) > latest[key][2]:
            latest[key] = (str(table), str(run), int(at))
    out = []
    for source, (table, run, at) in sorted(latest.items()):
        rows = run_summary(db, table, run)
        out.append({"source": source, "table": table, "run": run, "at": at,
                    **{k: sum(int(r[k] or 0) for r in rows) for k in ("rows_received", "rows_stored", "rows_rejected")}})
    return out
