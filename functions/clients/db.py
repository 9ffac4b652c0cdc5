"""The only way any code runs SQL: the `crate` client, against CrateDB or the embedded server.

Both modes speak CrateDB's HTTP `/_sql`, so callers write CrateDB SQL once. Errors become ours:
bad credentials -> Unauthorized, server down or slow -> Unavailable(retry_after=5), SQL mistakes ->
StatementRejected (the caller's SQL: 400), DuplicateKey (409) or DatabaseError (the server's trouble: 500).

`run_atomically` uses a protocol extension when the server's `GET /` banner says
`"finops_embedded": true`: one `/_sql` request with `{"stmts": [{"stmt", "args"}, ...]}` that the
embedded engine runs in ONE transaction. It goes through the crate client's own HTTP client
(`client._json_request`: same pool, auth, gzip and error handling), the one private crate API used
here. Against CrateDB (no transactions) the statements run one by one: callers make each step
idempotent so a retry after a partial failure converges.

Plain CrateDB mode (`plain_cratedb=True`, or `FINOPS_DB_PLAIN_CRATEDB=true` in the environment,
functions.settings.database.DatabaseClientSettings): the banner is not read and `embedded` is False even
against the embedded engine, so every caller takes its CrateDB path (statements one by one,
`bulk_args`, no payloads by reference). With no CrateDB server at hand, that is how the SQL
CrateDB mode sends is run and checked (tests/test_cratedb_mode_sql_parses_under_cratedb_grammar.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from crate import client as crate_client
from crate.client import exceptions as crate_errors

from functions.errors import Conflict, FinopsError, Refused, Unauthorized, Unavailable
from functions.logs import get_logger
from functions.settings.database import database_client_settings

log = get_logger(__name__)

_USER_ERRORS = (
    "SQLParseException", "RelationUnknown", "ColumnUnknownException", "SchemaUnknownException",
    "UnsupportedFeatureException", "ColumnValidationException", "InvalidColumnNameException",
    "InvalidRelationName", "RelationAlreadyExists", "AmbiguousColumnException",
    "ConversionException", "UnsupportedFunctionException", "InvalidArgumentException",
    "IllegalArgumentException", "Cannot cast", "mismatched input", "no viable alternative",
)
_AUTH_MARKERS = ("401", "Unauthorized", "authentication failed", "authentication required")


@dataclass(frozen=True)
class Result:
    """A statement's answer: column names, rows (timestamps as epoch ms) and CrateDB's rowcount."""

    cols: list[str]
    rows: list[list[Any]]
    rowcount: int


class DatabaseError(FinopsError):
    """A SQL statement failed on the server's side (answered 500, retried)."""


class StatementRejected(DatabaseError, Refused):
    """The statement's own fault (syntax, unknown column or table): answered 400, final."""


class DuplicateKey(DatabaseError, Conflict):
    """An insert hit an existing primary key: answered 409."""


class Database:
    """One per (url, user, password); connects on first use and is safe to share between threads.

    `plain_cratedb`: never use the embedded engine's extensions (None = FINOPS_DB_PLAIN_CRATEDB).
    """

    def __init__(
        self, url: str, username: str | None = None, password: str | None = None, timeout: float = 60.0,
        *, plain_cratedb: bool | None = None,
    ) -> None:
        self.url = url
        self._plain_cratedb = plain_cratedb
        self._username = username
        self._password = password
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._embedded = False

    # ------------------------------------------------------------ connection

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is None:
                try:
                    conn = crate_client.connect(
                        self.url, username=self._username, password=self._password,
                        timeout=self._timeout, pool_size=8,
                    )
                    self._embedded = not self._plain() and _is_embedded(conn)
                except Exception as exc:
                    raise map_error(exc) from exc
                if self._embedded:
                    conn.client.compress = False  # CPU-bound server on a fast link: gzip costs more
                self._conn = conn
            return self._conn

    def _plain(self) -> bool:
        if self._plain_cratedb is not None:
            return self._plain_cratedb
        return database_client_settings().plain_cratedb

    @property
    def embedded(self) -> bool:
        """Whether the server is the embedded engine (multi-statement transactions allowed)."""
        self._connection()
        return self._embedded

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------ statements

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Result:
        """Run one statement (`?` or `$n` placeholders)."""
        cursor = self._connection().cursor()
        try:
            cursor.execute(stmt, list(args) if args is not None else None)
            rows = [list(r) for r in cursor.fetchall()] if cursor.description else []
            cols = [d[0] for d in cursor.description or []]
            return Result(cols, rows, cursor.rowcount)
        except Exception as exc:
            raise map_error(exc) from exc
        finally:
            cursor.close()

    def executemany(self, stmt: str, bulk_args: Sequence[Sequence[Any]]) -> list[int]:
        """Run `stmt` once per argument row in ONE request; per-row rowcounts (-2 = that row failed)."""
        if not bulk_args:
            return []
        cursor = self._connection().cursor()
        try:
            results = cursor.executemany(stmt, bulk_args if isinstance(bulk_args, list) else list(bulk_args))
        except Exception as exc:
            raise map_error(exc) from exc
        finally:
            cursor.close()
        return [int(r.get("rowcount", -2)) for r in results or []]

    def run_atomically(self, stmts: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        """All statements in one transaction on the embedded engine; in order on CrateDB."""
        if not stmts:
            return
        conn = self._connection()
        if not self._embedded:
            for stmt, args in stmts:
                self.execute(stmt, args)
            return
        body = {"stmts": [{"stmt": s, "args": list(a or [])} for s, a in stmts]}
        try:
            conn.client._json_request("POST", conn.client.path, data=orjson.dumps(body))
        except Exception as exc:
            raise map_error(exc) from exc

    def table_exists(self, name: str) -> bool:
        """Whether a table named exactly `name` exists in any schema (like Krateo's check)."""
        result = self.execute("SELECT table_name FROM information_schema.tables WHERE table_name = ?", [name])
        return bool(result.rows)


def connect(
    url: str, username: str | None = None, password: str | None = None, *, plain_cratedb: bool | None = None
) -> Database:
    """A Database that has already reached the server (so bad URLs and credentials fail here)."""
    db = Database(url, username, password, plain_cratedb=plain_cratedb)
    db._connection()
    return db


def _is_embedded(conn: Any) -> bool:
    """Read the `GET /` banner for `finops_embedded` (CrateDB's banner lacks it)."""
    try:
        response = conn.client._request("GET", "/")
        if response.status != 200:
            return False
        return bool(orjson.loads(response.data).get("finops_embedded"))
    except (crate_errors.Error, orjson.JSONDecodeError, AttributeError):
        log.warning("could not read the database banner; assuming CrateDB", extra={"url": conn.client})
        return False


def map_error(exc: BaseException) -> FinopsError:
    """A crate client exception as one of ours (the message is kept)."""
    if isinstance(exc, FinopsError):
        return exc
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, crate_errors.ConnectionError):
        return Unavailable(f"database unavailable: {message}", retry_after=5)
    if any(marker in message for marker in _AUTH_MARKERS):
        return Unauthorized(f"database rejected the credentials: {message}")
    if isinstance(exc, crate_errors.IntegrityError) or "DuplicateKey" in message:
        return DuplicateKey(message)
    if any(message.startswith(p) or p in message[:120] for p in _USER_ERRORS):
        return StatementRejected(message)
    return DatabaseError(message)
