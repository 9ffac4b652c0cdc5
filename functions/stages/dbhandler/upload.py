"""/upload: typed rows into a staging table per (run, part), then one atomic snapshot replacement.

- trigger: `POST /upload` from a scraper (ours: source/run/part/final; Krateo's: table/type only)
- input: a records table (string labels, `__value__`, `__timestamp__`) and the codec's row errors
- output: UploadResult (rows stored, rows rejected with reasons, committed or not)
- side effects: rows in `finops_staging_<t>`, a marker per staged part in `finops_upload_parts`,
  and on the final part the target table's slice replaced
- idempotency key: (table, run, part) for staging; (table, run) for the commit, remembered as
  `committed` on the markers so a retried final part changes nothing

Snapshot replacement (DESIGN §5): cost replaces every (source, billingperiodstart) slice present in
the run, resource replaces rows sharing (resourceid, metricname, timestamp), generic replaces the
source's whole slice. Without `source` (Krateo's scraper) the request is applied at once, replacing
rows that share Krateo's keys (spec §9.4) but keeping every incoming row: Krateo's upsert keeps only
one row per key (credit, tax and adjustment rows sharing it are lost) and refreshes only billedcost.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field, field_validator, model_validator

from functions.clients.db import Database
from functions.errors import Conflict, FieldError, FinopsError, InvalidInput
from functions.logs import get_logger
from functions.stages.dbhandler import columns, schema
from functions.stages.dbhandler.columns import RowError

log = get_logger("dbhandler.upload")

CHUNK_ROWS = 20_000
PARTS_TABLE = schema.PARTS_TABLE
STALE_MS = 24 * 3600 * 1000  # staged runs never committed are dropped after a day
_SEP = "'\x1f'"


class UploadRequest(BaseModel):
    """The query of one `POST /upload` (spec §9.3 plus our snapshot-replacement fields)."""

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


def handle(
    request: UploadRequest,
    table: pa.Table,
    row_errors: Sequence[FieldError | RowError],
    db: Database,
    row_numbers: Sequence[int] | None = None,
) -> UploadResult:
    """Stage the request's good rows and, on the final part (or in legacy mode), commit the run."""
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
    stored, failed = _stage(db, target, request, run, conv)
    errors = sorted(errors + failed, key=lambda e: e.row)
    committed = False
    if request.final or request.source is None:
        _commit(db, target, request, run)
        committed = True
    if stored == 0 and (table.num_rows or row_errors):
        note = " (the run was committed without them)" if committed and request.source else ""
        raise InvalidInput(f"no record was acceptable{note}", [FieldError(str(e.row) + _dot(e.loc), e.msg) for e in errors])
    return UploadResult(stored, _rejected(errors), errors, time.monotonic() - started, committed)


# ------------------------------------------------------------------------------------- staging


def _stage(db: Database, target: schema.Target, request: UploadRequest, run: str, conv: columns.Converted) -> tuple[int, list[RowError]]:
    """Replace (run, part) in staging with the converted rows; record the part. Returns (stored, failed rows)."""
    target.ensure(db, list(conv.columns))
    staging = target.staging
    if request.source is not None:
        db.execute(f"DELETE FROM {q(staging)} WHERE finops_run = ? AND finops_part = ?", [run, request.part])
    extra = (request.source, run, int(time.time() * 1000), request.part)
    stored = 0
    failed: list[RowError] = []
    for start in range(0, conv.rows, CHUNK_ROWS):
        stop = min(conv.rows, start + CHUNK_ROWS)
        stmt, rows = _chunk_rows(staging, conv.columns, start, stop, extra)
        counts = db.executemany(stmt, rows)
        for offset, count in enumerate(counts):
            if count == -2:
                failed.append(RowError(conv.row_numbers[start + offset], "", "the database refused the row"))
            else:
                stored += 1
    if request.source is not None:
        _mark_part(db, target, request, run, stored)
    return stored, failed


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
    stmt = f"INSERT INTO {q(staging)} ({', '.join(q(c) for c in names)}) VALUES ({', '.join('?' * len(names))})"
    rows = list(zip(*values, *(itertools.repeat(x, n) for x in extra), strict=True))
    return stmt, rows


def _mark_part(db: Database, target: schema.Target, request: UploadRequest, run: str, rows: int) -> None:
    db.execute(f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ? AND finops_part = ?", [target.name, run, request.part])
    db.execute(
        f"INSERT INTO {PARTS_TABLE} (target_table, finops_source, finops_run, finops_part, finops_rows, staged_at, committed) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [target.name, request.source, run, request.part, rows, int(time.time() * 1000), False],
    )


def _committed(db: Database, target: schema.Target, run: str) -> bool:
    schema.ensure_parts_table(db)
    db.execute(f"REFRESH TABLE {PARTS_TABLE}")
    res = db.execute(f"SELECT count(*) FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ? AND committed = TRUE", [target.name, run])
    return bool(res.rows and res.rows[0][0])


# -------------------------------------------------------------------------------------- commit


def _commit(db: Database, target: schema.Target, request: UploadRequest, run: str) -> None:
    """Replace the run's slices in one atomic unit (sequential idempotent steps on CrateDB)."""
    db.execute(f"REFRESH TABLE {q(target.staging)}")
    if request.source is not None:
        _check_parts(db, target, run, request.part)
    cols = target.commit_columns(db)
    col_list = ", ".join(q(c) for c in cols)
    stmts: list[tuple[str, Sequence[Any] | None]] = [
        _delete_replaced(target, request.source, run),
        (f"INSERT INTO {q(target.name)} ({col_list}) SELECT {col_list} FROM {q(target.staging)} WHERE finops_run = ?", [run]),
        (f"REFRESH TABLE {q(target.name)}", None),
    ]
    if request.source is not None:
        stmts.append((f"UPDATE {PARTS_TABLE} SET committed = TRUE WHERE target_table = ? AND finops_run = ?", [target.name, run]))
    stmts.append((f"DELETE FROM {q(target.staging)} WHERE finops_run = ?", [run]))
    db.run_atomically(stmts)
    log.info("run committed", extra={"table": target.name, "run": run, "source": request.source})
    if request.source is not None:
        _drop_stale(db, target)


def _delete_replaced(target: schema.Target, source: str | None, run: str) -> tuple[str, Sequence[Any] | None]:
    """The DELETE that makes room for the run: by slice with a source, by Krateo's key without."""
    t, s = q(target.name), q(target.staging)
    if source is not None and target.kind == "cost":
        return (f"DELETE FROM {t} WHERE finops_source = ? AND billingperiodstart IN "
                f"(SELECT DISTINCT billingperiodstart FROM {s} WHERE finops_run = ?)", [source, run])
    if source is not None and target.kind == "generic":
        return f"DELETE FROM {t} WHERE finops_source = ?", [source]
    keys = target.keys
    if not keys:  # generic without a source: Krateo has no key either; rows are appended
        return f"DELETE FROM {t} WHERE 1 = 0", None
    expr = _key_expr(keys)
    return f"DELETE FROM {t} WHERE {expr} IN (SELECT {expr} FROM {s} WHERE finops_run = ?)", [run]


def _key_expr(keys: Sequence[str]) -> str:
    """One comparable text per row from the key columns (NULL-safe), for a semi-join both engines run."""
    return f" || {_SEP} || ".join(f"COALESCE(CAST({q(k)} AS TEXT), '')" for k in keys)


def _check_parts(db: Database, target: schema.Target, run: str, final_part: int) -> None:
    res = db.execute(f"SELECT finops_part FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ?", [target.name, run])
    have = {int(r[0]) for r in res.rows}
    missing = [p for p in range(final_part + 1) if p not in have]
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
                (f"DELETE FROM {q(target.staging)} WHERE finops_run = ?", [run]),
                (f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND finops_run = ?", [target.name, run]),
            ])
        db.execute(f"DELETE FROM {PARTS_TABLE} WHERE target_table = ? AND committed = TRUE AND staged_at < ?", [target.name, cutoff])
    except FinopsError:
        log.warning("stale staging cleanup failed", exc_info=True, extra={"table": target.name})


# ------------------------------------------------------------------------------------- helpers


def q(name: str) -> str:
    """A quoted identifier (names are validated before they get here; quoting is the second guard)."""
    return '"' + name.replace('"', '""') + '"'


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
