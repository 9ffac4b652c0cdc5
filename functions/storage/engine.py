"""The embedded SQL engine: DuckDB behind CrateDB semantics (epoch-ms timestamps, objects, bulk).

One DuckDB connection guarded by a lock: DuckDB serialises writers anyway, temp views live per
connection, and a lock makes multi-statement transactions trivially isolated. Placeholder INSERTs
(`args` and `bulk_args` alike) go through one columnar path: rows are transposed, converted per
target column type into Arrow arrays (rows that fail conversion are reported with rowcount -2, like
CrateDB's bulk errors) and inserted with one `INSERT ... SELECT` from the Arrow table.

Payloads by reference (a dialect EXTENSION of the embedded engine, not CrateDB SQL): the process
that owns the engine (the database handler) may `register_payload(table)` a typed Arrow table and
get a one-shot handle; a statement naming `finops_payload('<handle>')`, sent through the crate
client over loopback HTTP like every other statement, then scans that table directly (DuckDB reads
Arrow in place), so upload rows never become JSON. A handle is `<pid>-<random>`, valid only in this
process, dropped by `release_payload` or after `PAYLOAD_TTL_S`; an unknown, expired or foreign
handle is refused with code 4000. Used only when the server's `GET /` says `finops_embedded: true`.

Closed at connect: after its own set-up (time zone, memory and thread limits, spill directory,
information_schema views) the connection turns external access off (no file, URL or other
database reachable from SQL), extension install and autoload off, Python replacement scans off,
and then locks its configuration, so no statement can undo any of it. Caller statements
(`execute`, `execute_bulk`, `run_transaction`) pass the front door first (`sql_policy.admit`:
one allow-list of statement kinds, table functions and relations); the engine's own statements
(views, `duckdb_columns()`, ADD COLUMN, the Arrow insert) run on the connection directly.

A time limit per caller statement (`statement_timeout`, default `STATEMENT_TIMEOUT_S`): DuckDB has
none of its own, and one runaway statement would hold the lock, so every upload, forever. One
watchdog thread per engine interrupts the statement past its deadline; it is answered 400 naming
the limit, its transaction rolls back, and the next statement runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from functions.storage import convert, sql_policy
from functions.storage.dialect import (
    NOOP,
    PAYLOAD_FUNCTION,
    Insert,
    SqlError,
    parse_insert,
    payload_view,
    quote_ident,
    statement_kind,
    translate,
)

MEMORY_LIMIT = "384MB"
"""DuckDB's buffer pool cap for file databases (its default, 80% of RAM, let a million-row commit
push the handler past 1 GiB; beyond the cap DuckDB spills to `<file>.tmp`)."""

MEMORY_LIMIT_IN_MEMORY = "1GB"
"""The cap of a ':memory:' database (tests, throw-away runs): its tables live in the buffer pool and
it has nowhere to spill, so the cap is the largest database it can hold."""

THREADS = 2
"""DuckDB's worker threads: the database handler's CPU limit (knative/base/20-services.yaml) is two
cores; DuckDB's default (every core of the node) only contends with the handler's own workers."""

_CLOSED = (
    "python_enable_replacements = false",  # no Python variable of the process scanned by its name
    "enable_progress_bar = false",
    "allow_persistent_secrets = false",
    "autoinstall_known_extensions = false",
    "autoload_known_extensions = false",
    "allow_community_extensions = false",
    "enable_external_access = false",  # no file, URL or other database from SQL; ATTACH, COPY, read_* refused
    "lock_configuration = true",  # last: nothing above can be SET, RESET or PRAGMA'd back
)
"""Settings applied at connect, after the engine's own set-up, in this order."""

STATEMENT_TIMEOUT_S = 300.0
"""The default time limit of one caller statement (`Engine(statement_timeout=...)`): DuckDB has no
statement timeout of its own, and the engine serves one statement at a time, so a runaway query
(`range(10^13)`, an unbounded `WITH RECURSIVE`) would hold every other caller, uploads included,
forever. Large enough for a million-row commit (about 10 s)."""

PAYLOAD_TTL_S = 600.0
"""A registered payload nobody released is dropped after this long (a caller that died mid-part)."""

_INFO_VIEWS = """
CREATE OR REPLACE TEMP VIEW finops_information_schema_tables AS
SELECT table_catalog, CASE WHEN table_schema = 'main' THEN 'doc' ELSE table_schema END AS table_schema,
       table_name, table_type
FROM information_schema.tables WHERE table_catalog <> 'temp' AND table_schema <> 'pg_catalog';
CREATE OR REPLACE TEMP VIEW finops_information_schema_columns AS
SELECT table_catalog, CASE WHEN table_schema = 'main' THEN 'doc' ELSE table_schema END AS table_schema,
       table_name, column_name, ordinal_position, data_type, is_nullable
FROM information_schema.columns WHERE table_catalog <> 'temp' AND table_schema <> 'pg_catalog';
"""


@dataclass
class SqlResult:
    """One statement's answer in CrateDB's terms."""

    cols: list[str] = field(default_factory=list)
    col_types: list[Any] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    rowcount: int = 0


class Engine:
    """A DuckDB database (file or ':memory:') speaking CrateDB semantics; thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        memory_limit: str | None = None,
        threads: int = THREADS,
        *,
        front_door: bool = True,
        statement_timeout: float | None = STATEMENT_TIMEOUT_S,
    ) -> None:
        """Open `path` closed (see the module docstring).

        `front_door=False` skips the caller-statement check: only the front-door benchmark turns it
        off, to measure the check against the same run without it. The engine stays closed anyway.
        `statement_timeout` (seconds; None or 0: no limit) bounds each caller statement, counted from
        when it starts to run (not while it waits for the engine): one past it is interrupted and
        answered 400 naming the limit, and the engine serves the next statement.
        """
        self._lock = threading.RLock()
        self._front_door = front_door
        self.on_statement: Callable[[str], None] | None = None
        """Called with each caller statement before it is checked (tests record what our code sends)."""
        in_memory = str(path) == ":memory:"
        limit = memory_limit or (MEMORY_LIMIT_IN_MEMORY if in_memory else MEMORY_LIMIT)
        self._con = duckdb.connect(str(path))
        # closed at interpreter exit at the latest: a connection still holding registered Arrow
        # payloads that is torn down during finalisation aborts the process
        self._watchdog = _Watchdog(self._con.interrupt, statement_timeout)
        self._closer = weakref.finalize(self, _close, self._con, self._watchdog)
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute(f"SET memory_limit = '{_setting_text(limit)}'")
        self._con.execute(f"SET threads = {int(threads)}")
        # a file database spills to <file>.tmp beyond the limit; one in memory has nowhere to spill
        spill = "" if in_memory else f"{os.path.abspath(str(path))}.tmp"
        self._con.execute(f"SET temp_directory = '{_setting_text(spill)}'")
        for ddl in _INFO_VIEWS.split(";"):
            if ddl.strip():
                self._con.execute(ddl)
        for setting in _CLOSED:
            self._con.execute(f"SET {setting}")
        self._columns: dict[str, dict[str, str]] = {}
        self._payloads: dict[str, tuple[str, float]] = {}  # handle -> (registered view, deadline)

    def close(self) -> None:
        with self._lock:
            self._closer()

    # ------------------------------------------------------------ payloads (extension)

    def register_payload(self, table: pa.Table, ttl: float = PAYLOAD_TTL_S) -> str:
        """Register a typed Arrow table for `finops_payload('<handle>')`; returns the one-shot handle."""
        handle = f"{os.getpid()}-{secrets.token_hex(16)}"
        view = payload_view(handle)
        with self._lock:
            self._drop_expired_payloads()
            self._con.register(view, table)
            self._payloads[handle] = (view, time.monotonic() + ttl)
        return handle

    def release_payload(self, handle: str) -> None:
        """Forget a payload (idempotent): its table is no longer referenced by the engine."""
        with self._lock:
            entry = self._payloads.pop(handle, None)
            if entry is not None:
                self._con.unregister(entry[0])

    def _drop_expired_payloads(self) -> None:
        now = time.monotonic()
        for handle in [h for h, (_, deadline) in self._payloads.items() if deadline < now]:
            self.release_payload(handle)

    def _payload_view(self, handle: str) -> str:
        """The registered view of a handle; SqlError naming why a handle is refused."""
        owner = handle.partition("-")[0]
        if owner != str(os.getpid()):
            raise SqlError(
                f"UnsupportedFeatureException[{PAYLOAD_FUNCTION}('{handle}'): the handle was not registered by "
                "this process; payload handles are valid only inside the process that owns the embedded engine]",
                4000,
            )
        entry = self._payloads.get(handle)
        if entry is None or entry[1] < time.monotonic():
            raise SqlError(f"SQLParseException[{PAYLOAD_FUNCTION}('{handle}'): unknown, released or expired payload handle]", 4000)
        return entry[0]

    # ------------------------------------------------------------ public API

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> SqlResult:
        """Run one statement with optional positional `args` (`?` or `$n`)."""
        with self._lock, self._watchdog.timed():
            return self._run(stmt, list(args or []))

    def execute_bulk(self, stmt: str, bulk_args: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Run one statement per argument row; a placeholder INSERT becomes ONE columnar insert.

        Returns CrateDB's bulk `results`: `{"rowcount": n}` per row, -2 with `error_message` for a
        row that failed.
        """
        with self._lock:
            ins = parse_insert(stmt)
            if ins is not None and len(ins.params) == 1:
                self._check_insert(stmt, ins)
                with self._watchdog.timed():
                    return self._insert(ins, bulk_args, ins.params[0], per_row=True)[1]
            if self._front_door:  # a refused statement is refused once, as a whole, not row by row
                sql_policy.admit(stmt, self._payload_view)
            out: list[dict[str, Any]] = []
            for args in bulk_args:
                try:
                    with self._watchdog.timed():
                        out.append({"rowcount": self._run(stmt, list(args)).rowcount})
                except SqlError as exc:
                    out.append(_failed(exc.message))
            return out

    def run_transaction(self, stmts: Sequence[tuple[str, Sequence[Any] | None]]) -> list[SqlResult]:
        """Run statements in ONE transaction: all take effect or none does."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                results = []
                for n, (stmt, args) in enumerate(stmts):
                    try:
                        with self._watchdog.timed():
                            results.append(self._run(stmt, list(args or [])))
                    except SqlError as exc:
                        exc.message = f"{exc.message} (statement {n + 1} of {len(stmts)}, rolled back)"
                        raise
                with self._watchdog.timed():
                    try:
                        self._con.execute("COMMIT")
                    except duckdb.Error as exc:
                        raise convert.sql_error(exc) from exc
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
                    self._con.execute("ROLLBACK")
                self._columns.clear()
                raise
            return results

    def table_columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of a table in the default schema; {} when it does not exist."""
        with self._lock:
            return dict(self._table_columns(table))

    # ------------------------------------------------------------ statements

    def _run(self, stmt: str, args: list[Any]) -> SqlResult:
        ins = parse_insert(stmt)
        if ins is not None:
            self._check_insert(stmt, ins)
            order = tuple(range(len(ins.columns)))
            rowcount, _ = self._insert(ins, _rows_of(ins, args), order, per_row=False)
            return SqlResult(rowcount=rowcount)
        if self.on_statement is not None:
            self.on_statement(stmt)
        sql = sql_policy.admit(stmt, self._payload_view) if self._front_door else translate(stmt, self._payload_view)
        if sql == NOOP:
            return SqlResult(rowcount=0)
        kind = statement_kind(stmt)
        if kind in ("create", "alter", "drop"):
            self._columns.clear()
        table = self._sql(sql, args)
        if kind in ("insert", "update", "delete"):
            return SqlResult(rowcount=_count(table))
        if table is None or kind in ("create", "alter", "drop", "set"):
            return SqlResult(rowcount=1)
        cols, types, rows = convert.result_rows(table)
        return SqlResult(cols, types, rows, len(rows))

    def _check_insert(self, stmt: str, ins: Insert) -> None:
        """A placeholder INSERT is proven plain by parse_insert (a table, column names, placeholders);
        its ON CONFLICT clause is the only SQL of its own, so only then does the front door read it."""
        if self.on_statement is not None:
            self.on_statement(stmt)
        if ins.on_conflict and self._front_door:
            sql_policy.admit_plain(stmt)

    def _sql(self, sql: str, args: list[Any]) -> pa.Table | None:
        """Run DuckDB SQL; epoch-ms integers compared with TIMESTAMPs are retried as datetimes."""
        try:
            return _fetch(self._con, sql, args)
        except duckdb.BinderException as exc:
            fixed = convert.epoch_args(args) if "TIMESTAMP" in str(exc) else args
            if fixed is args:
                raise convert.sql_error(exc) from exc
            try:
                return _fetch(self._con, sql, fixed)
            except duckdb.Error as exc2:
                raise convert.sql_error(exc2) from exc2
        except duckdb.Error as exc:
            raise convert.sql_error(exc) from exc

    # ------------------------------------------------------------ columnar INSERT

    def _insert(
        self, ins: Insert, rows: Sequence[Sequence[Any]], order: tuple[int, ...], *, per_row: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        """Insert `rows` (argument lists; column i is argument order[i]) with one columnar insert."""
        width = 1 + max(order)
        for n, row in enumerate(rows):
            if len(row) != width:
                raise SqlError(
                    f"SQLParseException[args row {n} has {len(row)} values, the statement takes {width}]"
                )
        if not rows:
            return 0, []
        target = self._ensure_columns(ins.table, ins.columns)
        cols = [list(c) for c in zip(*rows, strict=True)]  # lists: pa.array reads them ~5x faster than tuples
        arrays: list[pa.Array] = []
        errors: dict[int, str] = {}
        for name, index in zip(ins.columns, order, strict=True):
            array, bad = convert.to_arrow(cols[index], target[name], name)
            arrays.append(array)
            for bad_row, msg in bad.items():
                errors.setdefault(bad_row, msg)
        if errors and not per_row:
            raise SqlError(next(iter(errors.values())), 4003)
        data = pa.Table.from_arrays([*arrays, pa.array(range(len(rows)), pa.int64())],
                                    names=[*ins.columns, "__row"])
        if errors:
            data = data.filter(pa.array([i not in errors for i in range(len(rows))]))
        self._insert_arrow(ins, data)
        results = [_failed(errors[i]) if i in errors else {"rowcount": 1} for i in range(len(rows))]
        return len(rows) - len(errors), results

    def _insert_arrow(self, ins: Insert, data: pa.Table) -> None:
        cols = ", ".join(quote_ident(c) for c in ins.columns)
        source = "finops_bulk_source"
        select = f"SELECT {cols} FROM {source}"
        if ins.on_conflict and ins.conflict_cols:
            keys = ", ".join(quote_ident(c) for c in ins.conflict_cols)
            order = "ASC" if ins.do_nothing else "DESC"
            select += f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __row {order}) = 1"
        sql = f"INSERT INTO {quote_ident(ins.table)} ({cols}) {select} {ins.on_conflict}"
        self._con.register(source, data)
        try:
            self._con.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise convert.sql_error(exc) from exc
        finally:
            self._con.unregister(source)

    def _table_columns(self, table: str) -> dict[str, str]:
        cached = self._columns.get(table)
        if cached is None:
            found = self._con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
            cached = {str(n): str(t) for n, t in found}
            if cached:
                self._columns[table] = cached
        return cached

    def _ensure_columns(self, table: str, columns: Sequence[str]) -> dict[str, str]:
        """Target column types; unknown columns are added as VARCHAR (column_policy='dynamic')."""
        existing = self._table_columns(table)
        if not existing:
            raise SqlError(f"RelationUnknown[Relation 'doc.{table}' unknown]", 4041)
        missing = [c for c in columns if c not in existing]
        for name in missing:
            try:
                self._con.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} VARCHAR")
            except duckdb.Error as exc:
                raise convert.sql_error(exc) from exc
        if missing:
            self._columns.pop(table, None)
            existing = self._table_columns(table)
        return existing


class _Watchdog:
    """One thread per engine that interrupts the running caller statement past its deadline.

    Why one thread and not a timer per statement: a statement costs two lock round trips here
    (set and clear the deadline), the thread is woken only when it was idle, and a deadline that
    passed is acted on only while that same statement still runs (`_serial`), so an interrupt never
    reaches the next statement. DuckDB ignores an interrupt when nothing runs.
    """

    def __init__(self, interrupt: Callable[[], None], limit: float | None) -> None:
        self.limit = limit if limit and limit > 0 else None
        self._interrupt = interrupt
        self._cond = threading.Condition(threading.Lock())
        self._deadline: float | None = None
        self._serial = 0
        self._fired = -1
        self._idle = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Run the block under the deadline; an interrupt it caused becomes the 400 naming the limit."""
        if self.limit is None or self._deadline is not None:  # no limit, or nested in a timed block
            yield
            return
        with self._cond:
            self._serial += 1
            serial = self._serial
            self._deadline = time.monotonic() + self.limit
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="duckdb-statement-watchdog", daemon=True)
                self._thread.start()
            elif self._idle:
                self._cond.notify()
        try:
            yield
        except SqlError as exc:
            if self._fired == serial:
                raise self.timed_out() from exc
            raise
        finally:
            with self._cond:
                self._deadline = None

    def timed_out(self) -> SqlError:
        return SqlError(
            f"InvalidArgumentException[the statement ran longer than the embedded database's statement time "
            f"limit of {self.limit:g} s and was cancelled (the limit is a setting of the database handler)]",
            4000,
        )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                deadline = self._deadline
                if deadline is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                if self._fired != self._serial:  # still the same statement: its deadline passed
                    self._fired = self._serial
                    with contextlib.suppress(duckdb.Error):
                        self._interrupt()
                self._idle = True
                self._cond.wait()  # until the statement ends and the next begins
                self._idle = False


def _close(con: duckdb.DuckDBPyConnection, watchdog: _Watchdog) -> None:
    watchdog.close()
    con.close()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any]) -> pa.Table | None:
    rel = con.sql(sql, params=args or None)
    return None if rel is None else rel.to_arrow_table()


def _count(table: pa.Table | None) -> int:
    if table is None or table.num_rows == 0 or table.num_columns == 0:
        return 0
    value = table.column(0)[0].as_py()
    return int(value) if isinstance(value, int) else 0


def _rows_of(ins: Insert, args: list[Any]) -> list[list[Any]]:
    """One statement's args as rows in column order (one row per VALUES tuple)."""
    if any(i >= len(args) for row in ins.params for i in row):
        raise SqlError("SQLParseException[not enough args for the INSERT's placeholders]")
    return [[args[i] for i in row] for row in ins.params]


def _failed(message: str) -> dict[str, Any]:
    return {"rowcount": -2, "error_message": message}


def _setting_text(value: str) -> str:
    """A setting value inside single quotes (values are ours, but a quote must not end the literal)."""
    return value.replace("'", "''")
