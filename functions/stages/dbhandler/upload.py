"""/upload: typed rows into a staging table per (run, part), then one atomic snapshot replacement.

- trigger: `POST /upload` from a scraper (ours: source/run/part/final; Krateo's: table/type only)
- input: a records table (string labels, `__value__`, `__timestamp__`) and the codec's row errors
- output: UploadResult (rows stored, rows rejected with reasons, committed or not)
- side effects: rows in `finops_staging_<t>`, a marker per staged part in `finops_upload_parts`,
  and on the final part the target table's slice replaced
- idempotency key: (table, run, part) for staging; (table, run) for the commit, remembered as
  `committed` on the markers so a retried final part changes nothing

Snapshot replacement (so a re-run never duplicates and a restated period replaces the old figures): cost replaces every (source, billingperiodstart) slice present in
the run, resource replaces rows sharing (resourceid, metricname, timestamp), generic replaces the
source's whole slice. Without `source` (Krateo's scraper) the request is applied at once, replacing
rows that share Krateo's keys (its handler's ON CONFLICT keys) but keeping every incoming row: Krateo's upsert keeps only
one row per key (credit, tax and adjustment rows sharing it are lost) and refreshes only billedcost.

How rows reach the database (every statement goes through the crate client, both modes):
- embedded mode (this process owns the engine, `GET /` says `finops_embedded: true`): the part's
  typed Arrow table is registered with the engine (`Payloads.register_payload`) and the INSERT
  reads it by reference, `... SELECT ... FROM finops_payload('<handle>')` (a dialect extension of
  the embedded engine); the final part (or a legacy request) is not staged at all: its rows go
  straight into the target in the same transaction as the slice delete and the copy of the
  earlier parts from staging, so a one-part run never touches staging;
- CrateDB mode: `bulk_args` (per-row rowcounts; -2 rows are reported as rejected), then the commit.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from pydantic import BaseModel, Field, field_validator, model_validator

from functions.clients.db import Database
from functions.errors import Conflict, FieldError, FinopsError, InvalidInput
from functions.logs import get_logger
from functions.stages.dbhandler import accounting, columns, schema
from functions.stages.dbhandler.columns import RowError
from functions.storage import ledger
from functions.storage.dialect import quote_ident

log = get_logger("dbhandler.upload")

CHUNK_ROWS = 20_000
PARTS_TABLE = schema.PARTS_TABLE
STALE_MS = 24 * 3600 * 1000  # staged runs never committed are dropped after a day
_SEP = "'\x1f'"


class Payloads(Protocol):
    """The embedded engine's in-process payload registry (functions.storage.engine.Engine)."""

    def register_payload(self, table: pa.Table) -> str: ...

    def release_payload(self, handle: str) -> None: ...


class UploadRequest(BaseModel):
    """The query of one `POST /upload` (Krateo's table, type and value, plus our snapshot-replacement fields)."""

    table: str = Field("", description="target table (validated, stored lower-case)")
    type: str = Field("cost", description="cost | resource | generic (case-insensitive; empty = cost)")
    value_index: int | None = Field(None, description="generic valueColumnIndex (informational: `__value__` is stored)")
    source: str | None = Field(None, description="config ref owning the rows; absent = legacy Krateo mode")
    run: str | None = Field(None, description="cycle id, unique per scrape")
    part: int = Field(0, ge=0, description="0-based part index within the run")
    final: bool = Field(False, description="true on the last part: commit the run")

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> str:
        return (str(v or "").strip().lower()) or "cost"

    @field_validator("source", "run", mode="before")
    @classmethod
    def _blank_none(cls, v: Any) -> Any:
        return v if v not in ("", None) else None

    @model_validator(mode="after")
    def _check(self) -> UploadRequest:
        if self.type not in ("cost", "resource", "generic"):
            raise ValueError(f"type must be cost, resource or generic, not {self.type!r}")
        if self.source is not None and self.run is None:
            raise ValueError("run is required with source")
        return self


@dataclass
class UploadResult:
    """What the handler answers: rows stored and rejected (with reasons), and whether the run committed."""

    records_processed: int
    records_rejected: int
    errors: list[RowError] = field(default_factory=list)
    time_taken: float = 0.0
    committed: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "message": "Data uploaded successfully",
            "records_processed": self.records_processed,
            "records_rejected": self.records_rejected,
            "errors": [e.to_dict() for e in self.errors],
            "time_taken": round(self.time_taken, 6),
            "committed": self.committed,
        }


@dataclass(frozen=True)
class Retention:
    """How long rejected rows and ledger entries are kept (days)."""

    rejects_days: int = 30
    ledger_days: int = 400


def handle(
    request: UploadRequest,
    table: pa.Table,
    row_errors: Sequence[FieldError | RowError],
    db: Database,
    row_numbers: Sequence[int] | None = None,
    payloads: Payloads | None = None,
    retention: Retention = Retention(),  # noqa: B008 - frozen, shared safely
) -> UploadResult:
    """Stage the request's good rows and, on the final part (or in legacy mode), commit the run.

    Every row is accounted for: the rejected ones (with reasons and the raw row) and the part's
    received/rejected figures are recorded before the commit, the stored figures inside it.
    `payloads`: the co-located embedded engine (embedded mode only); rows then travel by reference.
    """
    started = time.monotonic()
    name = schema.table_name(request.table)
    target = schema.Target(request.type, name)
    errors = [_row_error(e) for e in row_errors]
    conv = columns.convert(request.type, table, target.types, target.required, row_numbers)
    errors = sorted(errors + conv.errors, key=lambda e: e.row)
    run = request.run or uuid.uuid4().hex
    if request.source is not None and _committed(db, target, run):
        log.info("run already committed", extra={"table": name, "run": run, "part": request.part})
        return UploadResult(conv.rows, _rejected(errors), errors, time.monotonic() - started, True)
    by_ref = payloads if payloads is not None and db.embedded else None
    committed = request.final or request.source is None
    key = ledger.PartKey(name, request.source, run, request.part)
    numbers = conv.numbers
    if by_ref is not None:
        # Embedded: the part's ledger rows ride in the staging or commit unit (one round trip less);
        # rejected rows are written first, on their own, so they exist before the run commits.
        book = accounting.part_statements(db, key, request.type, table, numbers, errors)
        if committed:
            stored, failed = _commit_with_rows(db, target, request, run, conv, by_ref, book)
        else:
            stored, failed = _stage(db, target, request, run, conv, by_ref, book)
    else:
        stored, failed = _stage(db, target, request, run, conv, by_ref)
        errors = sorted(errors + failed, key=lambda e: e.row)
        accounting.record_part(db, key, request.type, table, numbers, errors)
        if committed:
            _commit(db, target, request, run)
    if committed:
        ledger.expire(db, retention.rejects_days, retention.ledger_days)
    if stored == 0 and (table.num_rows or row_errors) and request.source is None:
        # A Krateo request that stored nothing is refused as a whole; a part of one of our runs is
        # answered 200 instead, so one all-bad part never fails the run (its rows are in the rejects).
        raise InvalidInput("no record was acceptable", [FieldError(str(e.row) + _dot(e.loc), e.msg) for e in errors])
    return UploadResult(stored, _rejected(errors), errors, time.monotonic() - started, committed)


# ------------------------------------------------------------------------------------- staging


def _stage(
    db: Database, target: schema.Target, request: UploadRequest, run: str, conv: columns.Converted, payloads: Payloads | None,
    book: Sequence[tuple[str, Sequence[Any] | None]] = (),
) -> tuple[int, list[RowError]]:
    """Replace (run, part) in staging with the converted rows; record the part. Returns (stored, failed rows)."""
    target.ensure(db, list(conv.arrays))
    staging = target.staging
    if request.source is not None:
        db.execute(f"DELETE FROM {quote_ident(staging)} WHERE finops_run = ? AND finops_part = ?", [run, request.part])
    extra = (request.source, run, int(time.time() * 1000), request.part)
    if payloads is not None:
        with _registered(payloads, conv, extra) as (handle, names):
            if handle:
                db.execute(_insert_payload(staging, names, handle))
        if request.source is not None:
            _mark_part(db, target, request, run, conv.rows, book)
        elif book:
            db.run_atomically(book)
        return conv.rows, []
    stored, failed = _bulk_insert(db, staging, conv, extra)
    if request.source is not None:
        _mark_part(db, target, request, run, stored)
    return stored, failed


def _bulk_insert(db: Database, staging: str, conv: columns.Converted, extra: tuple[Any, ...]) -> tuple[int, list[RowError]]:
    """The rows as crate `bulk_args` in chunks (CrateDB mode); rows the database refuses are reported."""
    stored = 0
    failed: list[RowError] = []
    values = conv.columns
    for start in range(0, conv.rows, CHUNK_ROWS):
        stop = min(conv.rows, start + CHUNK_ROWS)
        stmt, rows = _chunk_rows(staging, values, start, stop, extra)
        counts = db.executemany(stmt, rows)
        for offset, count in enumerate(counts):
            if count == -2:
                failed.append(RowError(conv.row_numbers[start + offset], "", "the database refused the row"))
            else:
                stored += 1
    return stored, failed


@contextlib.contextmanager
def _registered(payloads: Payloads, conv: columns.Converted, extra: tuple[Any, ...]) -> Iterator[tuple[str, list[str]]]:
    """The converted rows plus bookkeeping as a registered payload: (handle, column names); ('', []) if no row."""
    if conv.rows == 0:
        yield "", []
        return
    n = conv.rows
    source, run, ingested, part = extra
    table = pa.table(conv.arrays | {
        "finops_source": pa.nulls(n, pa.string()) if source is None else pa.repeat(pa.scalar(source, pa.string()), n),
        "finops_run": pa.repeat(pa.scalar(run, pa.string()), n),
        "finops_ingested_at": pa.repeat(pa.scalar(ingested, pa.int64()), n).cast(pa.timestamp("ms")),
        "finops_part": pa.repeat(pa.scalar(part, pa.int32()), n),
    })
    handle = payloads.register_payload(table)
    try:
        yield handle, table.column_names
    finally:
        payloads.release_payload(handle)


def _insert_payload(table: str, names: Sequence[str], handle: str) -> str:
    """INSERT reading a registered payload by reference (embedded engine extension)."""
    cols = ", ".join(quote_ident(c) for c in names)
    return f"INSERT INTO {quote_ident(table)} ({cols}) SELECT {cols} FROM finops_payload('{handle}')"


def _commit_with_rows(
    db: Database, target: schema.Target, request: UploadRequest, run: str, conv: columns.Converted, payloads: Payloads,
    book: Sequence[tuple[str, Sequence[Any] | None]] = (),
) -> tuple[int, list[RowError]]:
    """Embedded final part / legacy request: its rows go straight to the target in the commit's transaction."""
    target.ensure(db, list(conv.arrays))
    db.execute(f"REFRESH TABLE {quote_ident(target.staging)}")
    if request.source is not None:
        _check_parts(db, target, run, request.part, final_included=False)
    extra = (request.source, run, int(time.time() * 1000), request.part)
    with _registered(payloads, conv, extra) as (handle, names):
        cols = ", ".join(quote_ident(c) for c in target.commit_columns(db))
        stmts: list[tuple[str, Sequence[Any] | None]] = [
            *book,
            _delete_replaced(target, request.source, run, handle),
            (f"INSERT INTO {quote_ident(target.name)} ({cols}) SELECT {cols} FROM {quote_ident(target.staging)} WHERE finops_run = ?", [run]),
        ]
        if handle:
            stmts.append((_insert_payload(target.name, [c for c in names if c != "finops_part"], handle), None))
        stmts.append((f"REFRESH TABLE {quote_ident(target.name)}", None))
        stmts += ledger.stored_statements(target.name, target.kind, request.source, run, _inserted_rows(target, names, handle))
        if request.source is not None:
            stmts += _part_marker(target, request, run, conv.rows, committed=True)
            stmts.append((f"UPDATE {PARTS_TABLE} SET committed = TRUE WHERE target_table = ? AND finops_run = ?", [target.name, run]))
        stmts.append((f"DELETE FROM {quote_ident(target.staging)} WHERE finops_run = ?", [run]))
        db.run_atomically(stmts)
    log.info("run committed", extra={"table": target.name, "run": run, "source": request.source, "by_reference": True})
    if request.source is not None:
        _drop_stale(db, target)
    return conv.rows, []


def _inserted_rows(target: schema.Target, names: Sequence[str], handle: str) -> str:
    """The rows an embedded commit inserts (the run's staged parts and the final part's payload), for
    the ledger to count without scanning rows just written to the target; '' where it cannot."""
    cols = ("billingperiodstart", "billingcurrency", "billedcost") if target.kind == "cost" else ("finops_run",)
    staged = f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM {quote_ident(target.staging)} WHERE finops_run = ?"
    if not handle:
        return staged
    if not all(c in names for c in cols):
        return ""
    return f"{staged} UNION ALL SELECT {', '.join(quote_ident(c) for c in cols)} FROM finops_payload('{handle}')"


def _chunk_rows(staging: str, cols: dict[str, list[Any]], start: int, stop: int, extra: tuple[Any, ...]) -> tuple[str, list[tuple[Any, ...]]]:
    """The staging INSERT and its bulk_args for rows [start, stop).

    Columns that are all null in the chunk are left out (they default to NULL): fewer JSON values
    to encode and decode. Rows are built by zip in C, the bookkeeping values repeated.
    """
    n = stop - start
    names, values = [], []
    for name, col in cols.items():
        chunk = col[start:stop]
        if chunk.count(None) != n:
            names.append(name)
            values.append(chunk)
    names += ["finops_source", "finops_run", "finops_ingested_at", "finops_part"]
    stmt = f"INSERT INTO {quote_ident(staging)} ({', '.join(quote_ident(c) for c in names)}) VALUES ({', '.join('?' * len(names))})"
    rows = list(zip(*values, *(itertools.repeat(x, n) for x in extra), strict=True))
    return stmt, rows


def _mark_part(db: Database, target: schema.Target, request: UploadRequest, run: str, rows: int,
               book: Sequence[tuple[str, Sequence[Any] | None]] = ()) -> None:
    """The part's marker (and, embedded, its ledger rows) in one atomic unit."""
    db.run_atomically([*_part_marker(target, request, run, rows, committed=False), *book])


def _part_marker(
    target: schema.Target, request: UploadRequest, run: str, rows: int, *, committed: bool
) -> list[tuple[str, Sequence[Any] | None]]:
    """The statements replacing (run, part)'s marker in the staged-parts ledger."""
    return [
        (f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ? AND finops_part = ?", [target.name, run, request.part]),
        (
            f"INSERT INTO {PARTS_TABLE} (target_table, finops_source, finops_run, finops_part, finops_rows, staged_at, committed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [target.name, request.source, run, request.part, rows, int(time.time() * 1000), committed],
        ),
    ]


def _committed(db: Database, target: schema.Target, run: str) -> bool:
    schema.ensure_parts_table(db)
    db.execute(f"REFRESH TABLE {PARTS_TABLE}")
    res = db.execute(f"SELECT count(*) FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ? AND committed = TRUE", [target.name, run])
    return bool(res.rows and res.rows[0][0])


# -------------------------------------------------------------------------------------- commit


def _commit(db: Database, target: schema.Target, request: UploadRequest, run: str) -> None:
    """Replace the run's slices in one atomic unit (sequential idempotent steps on CrateDB)."""
    db.execute(f"REFRESH TABLE {quote_ident(target.staging)}")
    if request.source is not None:
        _check_parts(db, target, run, request.part)
    cols = target.commit_columns(db)
    col_list = ", ".join(quote_ident(c) for c in cols)
    stmts: list[tuple[str, Sequence[Any] | None]] = [
        _delete_replaced(target, request.source, run),
        (f"INSERT INTO {quote_ident(target.name)} ({col_list}) SELECT {col_list} FROM {quote_ident(target.staging)} WHERE finops_run = ?", [run]),
        (f"REFRESH TABLE {quote_ident(target.name)}", None),
        *ledger.stored_statements(target.name, target.kind, request.source, run),
    ]
    if request.source is not None:
        stmts.append((f"UPDATE {PARTS_TABLE} SET committed = TRUE WHERE target_table = ? AND finops_run = ?", [target.name, run]))
    stmts.append((f"DELETE FROM {quote_ident(target.staging)} WHERE finops_run = ?", [run]))
    db.run_atomically(stmts)
    log.info("run committed", extra={"table": target.name, "run": run, "source": request.source})
    if request.source is not None:
        _drop_stale(db, target)


def _delete_replaced(target: schema.Target, source: str | None, run: str, handle: str = "") -> tuple[str, Sequence[Any] | None]:
    """The DELETE that makes room for the run: by slice with a source, by Krateo's key without.

    `handle`: a registered payload holding more of the run's rows (embedded final part).
    """
    t = quote_ident(target.name)
    if source is not None and target.kind == "cost":
        return (f"DELETE FROM {t} WHERE finops_source = ? AND billingperiodstart IN "
                f"({_run_rows(target, 'DISTINCT billingperiodstart', handle)})", [source, run])
    if source is not None and target.kind == "generic":
        return f"DELETE FROM {t} WHERE finops_source = ?", [source]
    keys = target.keys
    if not keys:  # generic without a source: Krateo has no key either; rows are appended
        return f"DELETE FROM {t} WHERE 1 = 0", None
    expr = _key_expr(keys)
    return f"DELETE FROM {t} WHERE {expr} IN ({_run_rows(target, expr, handle)})", [run]


def _run_rows(target: schema.Target, expr: str, handle: str) -> str:
    """SELECT of `expr` over the run's staged rows (one `?`: the run) and the payload's, if any."""
    staged = f"SELECT {expr} FROM {quote_ident(target.staging)} WHERE finops_run = ?"
    return staged if not handle else f"{staged} UNION SELECT {expr} FROM finops_payload('{handle}')"


def _key_expr(keys: Sequence[str]) -> str:
    """One comparable text per row from the key columns (NULL-safe), for a semi-join both engines run."""
    return f" || {_SEP} || ".join(f"COALESCE(CAST({quote_ident(k)} AS TEXT), '')" for k in keys)


def _check_parts(db: Database, target: schema.Target, run: str, final_part: int, *, final_included: bool = True) -> None:
    """409 unless every part before the final (and the final itself when it was staged) is recorded."""
    res = db.execute(f"SELECT finops_part FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ?", [target.name, run])
    have = {int(r[0]) for r in res.rows}
    missing = [p for p in range(final_part + int(final_included)) if p not in have]
    if missing:
        raise Conflict(
            f"run {run} cannot be committed: parts {missing} of 0..{final_part} were never received",
            [FieldError("part", f"missing parts: {', '.join(map(str, missing))}")],
        )


def _drop_stale(db: Database, target: schema.Target) -> None:
    """Forget runs staged long ago and never committed (a scraper that gave up mid-run)."""
    try:
        cutoff = int(time.time() * 1000) - STALE_MS
        res = db.execute(f"SELECT DISTINCT finops_run FROM {PARTS_TABLE} WHERE target_table = ? AND committed = FALSE AND staged_at < ?", [target.name, cutoff])
        for (run,) in res.rows:
            db.run_atomically([
                (f"DELETE FROM {quote_ident(target.staging)} WHERE finops_run = ?", [run]),
                (f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ?", [target.name, run]),
            ])
        db.execute(f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND committed = TRUE AND staged_at < ?", [target.name, cutoff])
    except FinopsError:
        log.warning("stale staging cleanup failed", exc_info=True, extra={"table": target.name})


# ------------------------------------------------------------------------------------- helpers


def _row_error(err: FieldError | RowError) -> RowError:
    """Codec errors carry `loc` = "<row>[.<field>...]"; ours are RowErrors already."""
    if isinstance(err, RowError):
        return err
    head, _, rest = err.loc.partition(".")
    return RowError(int(head), rest, err.msg) if head.isdigit() else RowError(-1, err.loc, err.msg)


def _rejected(errors: Sequence[RowError]) -> int:
    return len({e.row for e in errors})


def _dot(loc: str) -> str:
    return f".{loc}" if loc else ""
