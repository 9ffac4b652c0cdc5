"""CrateDB's HTTP protocol (`GET /`, `POST /_sql`) as plain functions over the embedded engine.

The database handler mounts these; nothing here knows about Flask or functions-framework.

Protocol extension (only when the banner says `"finops_embedded": true`): a `/_sql` body
`{"stmts": [{"stmt": ..., "args": [...]}, ...]}` runs every statement in ONE transaction and
answers `{"cols": [], "rows": [], "rowcount": <sum>, "results": [{"rowcount": n}, ...]}`.
CrateDB itself has no transactions, so `functions.clients.db.Database.run_atomically` only sends it
to servers whose banner carries the flag.
"""

from __future__ import annotations

import gzip
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

from functions.clients.callers import basic_credentials
from functions.errors import Unauthorized
from functions.logs import get_logger
from functions.storage.dialect import SqlError, http_status
from functions.storage.engine import Engine, SqlResult

log = get_logger("storage.sqlapi")

CRATEDB_COMPAT_VERSION = "5.10.0"
"""The CrateDB version the embedded server claims (the crate client reads it)."""


def banner(node_name: str = "finops-embedded") -> dict[str, Any]:
    """The `GET /` body: CrateDB's banner shape plus `finops_embedded: true`."""
    return {
        "ok": True,
        "status": 200,
        "name": node_name,
        "cluster_name": "finops-embedded",
        "version": {
            "number": CRATEDB_COMPAT_VERSION,
            "build_hash": "finops-embedded",
            "build_snapshot": False,
            "lucene_version": "n/a",
        },
        "finops_embedded": True,
    }


def encode(obj: Any) -> bytes:
    """JSON bytes for an answer (orjson: fast, and the crate client reads it with orjson)."""
    return orjson.dumps(obj)


def handle_sql(
    body: bytes,
    engine: Engine,
    *,
    default_schema: str | None = "doc",
    content_encoding: str | None = None,
    types: bool = True,
) -> tuple[int, dict[str, Any]]:
    """One `POST /_sql` request -> (HTTP status, JSON body) shaped like CrateDB's answers.

    `content_encoding` is the request's Content-Encoding header (the crate client gzips bodies
    of 8 KiB and more); `default_schema` the Default-Schema header (only 'doc' exists here).
    """
    started = time.perf_counter()
    try:
        request = _decode(body, content_encoding)
        if default_schema not in (None, "", "doc"):
            raise SqlError(f"SchemaUnknownException[Schema '{default_schema}' unknown]", 4045)
        answer = _dispatch(request, engine, types)
    except SqlError as exc:
        return http_status(exc.code), {"error": {"message": exc.message, "code": exc.code}}
    except Exception:  # noqa: BLE001 - whatever failed, the caller gets CrateDB's JSON, never a bare 500
        log.exception("embedded engine failure")
        return 500, {"error": {"message": "SQLActionException[the embedded database failed on this statement; "
                                          "the handler's log has the details]", "code": 5000}}
    answer["duration"] = round((time.perf_counter() - started) * 1000, 3)
    return 200, answer


def _decode(body: bytes, content_encoding: str | None) -> dict[str, Any]:
    try:
        if content_encoding and content_encoding.strip().lower() == "gzip":
            body = gzip.decompress(body)
        request = orjson.loads(body)
    except (orjson.JSONDecodeError, OSError, EOFError) as exc:
        raise SqlError(f"SQLParseException[Failed to parse source: {exc}]", 4000) from exc
    if not isinstance(request, dict):
        raise SqlError("SQLParseException[the request body must be a JSON object]", 4000)
    return request


def _dispatch(request: dict[str, Any], engine: Engine, types: bool) -> dict[str, Any]:
    if "stmts" in request:
        return _transaction(request["stmts"], engine)
    stmt = request.get("stmt")
    if not isinstance(stmt, str):
        raise SqlError("SQLParseException[Field [stmt] was not found]", 4000)
    args, bulk_args = request.get("args"), request.get("bulk_args")
    if args is not None and bulk_args is not None:
        raise SqlError("SQLParseException[request body contains args and bulk_args; only one is allowed]")
    if bulk_args is not None:
        if not isinstance(bulk_args, list) or not all(isinstance(r, list) for r in bulk_args):
            raise SqlError("SQLParseException[bulk_args must be an array of arrays]", 4000)
        return {"cols": [], "results": engine.execute_bulk(stmt, bulk_args)}
    if args is not None and not isinstance(args, list):
        raise SqlError("SQLParseException[args must be an array]", 4000)
    return _result(engine.execute(stmt, args), types)


def _transaction(stmts: Any, engine: Engine) -> dict[str, Any]:
    if not isinstance(stmts, list) or not all(
        isinstance(s, dict) and isinstance(s.get("stmt"), str) and isinstance(s.get("args") or [], list)
        for s in stmts
    ):
        raise SqlError("SQLParseException[stmts must be an array of {stmt, args} objects]", 4000)
    results = engine.run_transaction([(s["stmt"], s.get("args")) for s in stmts])
    return {
        "cols": [],
        "rows": [],
        "rowcount": sum(max(r.rowcount, 0) for r in results),
        "results": [{"rowcount": r.rowcount} for r in results],
    }


def _result(result: SqlResult, types: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"cols": result.cols, "rows": result.rows, "rowcount": result.rowcount}
    if types:
        out["col_types"] = result.col_types
    return out


def check_basic_auth(header: str | None, users: Mapping[str, str], *, trust: bool = True) -> str:
    """The user named by an `Authorization: Basic` header whose password matches `users`.

    With `trust` (CrateDB's behaviour), an empty `users` mapping means authentication is off (its
    trust method: the header's user, or 'crate', is returned) and a user with an empty password logs
    in with none. Without it (authenticated by default), both are refused. Raises Unauthorized with
    CrateDB's wording.
    """
    user, password = basic_credentials(header) or (None, None)
    if not users and trust:
        return user or "crate"
    if user is None:
        raise Unauthorized("authentication required: missing or non-Basic Authorization header")
    expected = users.get(user)
    if expected is None or not hmac.compare_digest(expected.encode(), (password or "").encode()):
        raise Unauthorized(f'password authentication failed for user "{user}"')
    if not expected and not trust:
        raise Unauthorized(f'user "{user}" has an empty password, refused unless FINOPS_AUTH=open')
    return user


def unauthorized_answer(exc: Unauthorized) -> tuple[int, dict[str, str], bytes]:
    """CrateDB's failed-login answer: 401, plain text, `WWW-Authenticate` (status, headers, body)."""
    headers = {"WWW-Authenticate": 'Basic realm="CrateDB Authenticator"', "Content-Type": "text/plain"}
    return exc.status, headers, exc.message.encode()
