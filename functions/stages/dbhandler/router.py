"""HTTP routing of the database-handler function, framework-light: `dispatch()` takes plain values.

Routes: `GET /` (CrateDB banner in embedded mode), `POST /_sql` (embedded mode: CrateDB's SQL
endpoint over the embedded engine), `POST /upload`, `/compute...` (notebooks: notebook_store.py).
Every route answers with one Response type; every exception becomes one through the error table
(functions.errors.answer); nothing crashes the process.

No self-deadlock (embedded mode): the handler's own SQL client never calls this process's public
port. Its statements go to an SQL listener with threads of its own (functions.storage.sql_listener,
started once per process by `ready()`), and notebook runs get a second one, so a request never
waits for a worker of the pool it is holding and notebooks cannot take the handler's own slots.
The public `/_sql` runs on the engine in-process and waits on nothing but the engine's lock.

Authentication (Krateo's finops-database-handler, minus its flaw): every request's Basic credentials are checked, each
time. Krateo cached the first good connection and then accepted any credentials; we open a
connection per request with that request's credentials. Base64-encoded user and password are
accepted too: tried as given first, then each part decoded (a part that is not base64 stays raw).
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from pydantic import ValidationError

from functions.clients.callers import basic_credentials
from functions.clients.db import Database, connect
from functions.codecs import records
from functions.errors import (
    FieldError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    Unavailable,
    answered,
    field_errors,
)
from functions.logs import get_logger
from functions.settings.database import DbHandlerSettings
from functions.stages.dbhandler import notebook_store, schema, upload
from functions.stages.dbhandler.response import JSON, Response, header
from functions.storage import ledger

if TYPE_CHECKING:
    import flask

    from functions.storage.engine import Engine
    from functions.storage.sql_listener import SqlListener

__all__ = ["check_credentials", "current_settings", "dispatch", "engine", "handle"]
"""The handler's public names (a test guards them): handle() is the target's whole body."""

log = get_logger("dbhandler")

ARROW_STREAM = records.IPC_MEDIA_TYPE


def dispatch(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, settings: DbHandlerSettings
) -> Response:
    """Route one request; never raises."""
    try:
        settings = ready(settings)
        return _route(method.upper(), "/" + path.strip("/"), query, headers, body, settings)
    except Exception as exc:  # noqa: BLE001 - every exception is answered through the error table
        got = answered(exc, "dbhandler", path=path)
        return Response(got.status, got.body, got.headers)


def handle(request: flask.Request) -> flask.Response:
    """The functions-framework target's whole body: a Flask request in, a Flask response out."""
    import flask

    try:
        settings = current_settings()
    except Exception as exc:  # noqa: BLE001 - bad settings are an answer too (Misconfigured, from the table)
        got = answered(exc, "dbhandler", path=request.path)
        return flask.Response(orjson.dumps(got.body), got.status, headers=got.headers, content_type=JSON)
    query = {k: request.args.get(k, "") for k in request.args}
    resp = dispatch(request.method, request.path, query, dict(request.headers), request.get_data(), settings)
    return flask.Response(resp.payload(), resp.status, headers=resp.headers, content_type=resp.content_type)


# ---------------------------------------------------------------------------------- routing


def _route(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, settings: DbHandlerSettings) -> Response:
    if path == "/":
        if method not in ("GET", "HEAD"):
            raise _not_allowed(method, path)
        if settings.embedded:
            from functions.storage import sqlapi

            return Response(200, sqlapi.banner())
        return Response(200, b"finops database handler (CrateDB mode): POST /upload\n", content_type="text/plain")
    if path == "/_sql":
        return _sql(method, query, headers, body, settings)
    if path in ("/upload", "/upload/findings") and method != "POST":
        raise _not_allowed(method, path)
    if path == "/upload":
        return _upload(query, headers, body, settings)
    if path == "/upload/findings":
        return _findings(query, headers, body, settings)
    if path == "/compute" or path.startswith("/compute/"):
        return notebook_store.handle(method, path, query, headers, body, settings, lambda auth: open_verified(auth, settings))
    raise NotFound(f"no such endpoint: {method} {path} (see GET /, POST /upload, POST /_sql)")


def _not_allowed(method: str, path: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{method} is not allowed on {path}")


def _sql(method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, settings: DbHandlerSettings) -> Response:
    """CrateDB's `/_sql` over the embedded engine (embedded mode only)."""
    if not settings.embedded:
        raise NotFound("this handler runs in CrateDB mode: use CrateDB directly for SQL")
    if method != "POST":
        raise _not_allowed(method, "/_sql")
    from functions.storage import sql_listener, sqlapi

    try:
        sqlapi.check_basic_auth(header(headers, "Authorization"), settings.users)
    except Unauthorized as exc:
        status, extra, text = sqlapi.unauthorized_answer(exc)
        return Response(status, text, {k: v for k, v in extra.items() if k != "Content-Type"}, "text/plain")
    limit = settings.sql_max_body_bytes
    try:  # inflated in bounded steps: a small gzip body must not become gigabytes in memory
        body = sql_listener.inflate(body, header(headers, "Content-Encoding"), limit)
    except sql_listener.BodyTooLarge:
        return Response(413, {"error": {"message": f"request body exceeds the limit of {limit} bytes once decompressed "
                                                   "(FINOPS_DB_SQL_MAX_BODY_MB)", "code": 4130}})
    status, answer = sqlapi.handle_sql(
        body,
        engine(settings),
        default_schema=header(headers, "Default-Schema"),
        content_encoding=None,
        types="types" in query,
    )
    return Response(status, answer)


# ---------------------------------------------------------------------------------- /upload


def _upload(query: Mapping[str, str], headers: Mapping[str, str], body: bytes, settings: DbHandlerSettings) -> Response:
    started = time.monotonic()
    db = open_database(header(headers, "Authorization"), settings)
    try:
        request = _request(query)
        table, errors, numbers = _body(header(headers, "Content-Type") or "", body)
        if table.num_rows == 0 and not errors:
            committed = False
            if request.source is not None:  # an empty part still counts; an empty final still commits
                committed = upload.handle(request, table, [], db, payloads=_payloads(settings),
                                          retention=_retention(settings)).committed
            answer: dict[str, Any] = {"result": "No data to process"}
            if request.source is not None:
                answer["committed"] = committed
            return Response(200, answer)
        result = upload.handle(request, table, errors, db, numbers, payloads=_payloads(settings),
                               retention=_retention(settings))
    finally:
        db.close()
    result.time_taken = time.monotonic() - started
    log.info("upload", extra={"table": request.table, "type": request.type, "source": request.source, "run": request.run,
                              "part": request.part, "final": request.final, "rows": result.records_processed,
                              "rejected": result.records_rejected, "committed": result.committed})
    return Response(200, result.body())


def _findings(query: Mapping[str, str], headers: Mapping[str, str], body: bytes, settings: DbHandlerSettings) -> Response:
    """`POST /upload/findings?table=T&source=S&run=R`: a run's FOCUS conformance findings (JSON list),
    replacing that run's; reported by the scraper, which checks each snapshot it uploads."""
    db = open_database(header(headers, "Authorization"), settings)
    try:
        request = _request(query)
        if request.source is None or request.run is None:
            raise InvalidInput("source and run are required", [FieldError("query", "source and run name the run")])
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("Request must be JSON", [FieldError("body", str(exc))]) from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InvalidInput("findings must be a list of objects", [FieldError("body", "expected [{rule, column, ...}]")])
        stored = ledger.record_findings(db, schema.table_name(request.table), request.source, request.run, items)
    finally:
        db.close()
    return Response(200, {"findings": stored})


def _retention(settings: DbHandlerSettings) -> upload.Retention:
    return upload.Retention(settings.rejects_retention_days, settings.ledger_retention_days)


def _payloads(settings: DbHandlerSettings) -> upload.Payloads | None:
    """This process's engine when it owns one (embedded mode): upload rows then go by reference."""
    return engine(settings) if settings.embedded else None


def _request(query: Mapping[str, str]) -> upload.UploadRequest:
    """The query as an UploadRequest; Krateo's wording for a missing table; every bad field listed."""
    if not (query.get("table") or "").strip():
        raise InvalidInput("Table name not specified", [FieldError("table", "required")])
    values: dict[str, Any] = {k: query[k] for k in ("table", "type", "source", "run", "part") if k in query}
    if query.get("value") not in (None, ""):
        values["value_index"] = query["value"]
    values["final"] = (query.get("final") or "").strip().lower() in ("true", "1", "yes")
    try:
        return upload.UploadRequest.model_validate(values)
    except ValidationError as exc:
        raise InvalidInput("bad upload parameters", field_errors(exc, "query")) from exc


def _body(content_type: str, body: bytes) -> tuple[pa.Table, list[FieldError], list[int] | None]:
    """(records table, per-record errors, request index of each table row) from JSON or Arrow IPC."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == ARROW_STREAM:
        batches = list(records.read_ipc(body)) if body else []
        table = pa.Table.from_batches(batches) if batches else pa.table({})
        return table, [], None
    if ctype != JSON and not ctype.endswith("+json"):
        raise InvalidInput("Request must be JSON", [FieldError("Content-Type", f"expected {JSON} or {ARROW_STREAM}, got {content_type!r}")])
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("Request must be JSON", [FieldError("body", str(exc))]) from exc
    if not isinstance(obj, list):
        raise InvalidInput("Data must be a list of records", [FieldError("body", f"got {type(obj).__name__}")])
    table, errors = records.from_json(obj)
    bad = {int(e.loc.partition(".")[0]) for e in errors if e.loc.partition(".")[0].isdigit()}
    return table, errors, [i for i in range(len(obj)) if i not in bad]


# ------------------------------------------------------------------------------- credentials


def open_database(authorization: str | None, settings: DbHandlerSettings) -> Database:
    """A connection with THIS request's credentials, verified now (never a cached first connection)."""
    return open_verified(authorization, settings)[0]


def check_credentials(authorization: str | None, settings: DbHandlerSettings) -> None:
    """Refuse a caller before its body is read: embedded mode checks the users (a dict lookup, as given
    or base64-decoded); CrateDB mode only that the header is Basic (CrateDB itself checks the password
    when the request's connection opens, which needs no body)."""
    creds = basic_credentials(authorization)
    if creds is None:
        raise Unauthorized("authorization header is missing or not type basic")
    if not settings.embedded:
        return
    from functions.storage import sqlapi

    last: Unauthorized | None = None
    for user, password in _candidates(*creds):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            sqlapi.check_basic_auth(f"Basic {token}", settings.users)
            return
        except Unauthorized as exc:
            last = exc
    raise last or Unauthorized()


def open_verified(authorization: str | None, settings: DbHandlerSettings) -> tuple[Database, str, str]:
    """open_database, plus the user and password that worked (as given or base64-decoded)."""
    creds = basic_credentials(authorization)
    if creds is None:
        raise Unauthorized("authorization header is missing or not type basic")
    last: Unauthorized | None = None
    for user, password in _candidates(*creds):
        try:
            return _verified(user, password, settings), user, password
        except Unauthorized as exc:
            last = exc
    raise last or Unauthorized()


def _verified(user: str, password: str, settings: DbHandlerSettings) -> Database:
    if settings.embedded:
        from functions.storage import sqlapi

        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        sqlapi.check_basic_auth(f"Basic {token}", settings.users)
        return connect(settings.sql_url(), user, password)
    db = connect(settings.sql_url(), user, password)
    try:
        db.execute("SELECT 1")  # CrateDB checks the credentials; Unauthorized / Unavailable come from here
    except BaseException:
        db.close()
        raise
    return db


def _candidates(user: str, password: str) -> list[tuple[str, str]]:
    """As given, then each part base64-decoded where it decodes (Krateo's handler accepts both)."""
    decoded = (_b64(user), _b64(password))
    return [(user, password)] + ([decoded] if decoded != (user, password) else [])


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8") if text else text
    except (binascii.Error, UnicodeDecodeError):
        return text


# ------------------------------------------------------------------------- process singletons

_lock = threading.RLock()
_settings: DbHandlerSettings | None = None
_engines: dict[str, Engine] = {}
_listeners: dict[tuple[str, str], SqlListener] = {}  # (purpose, DuckDB file) -> this process's listener


def current_settings(build: Callable[[], DbHandlerSettings] = DbHandlerSettings.from_env) -> DbHandlerSettings:
    """Settings read once per process, on first use (embedded mode: with its SQL listeners started)."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = ready(build())
        return _settings


def ready(settings: DbHandlerSettings) -> DbHandlerSettings:
    """The settings with the ports of this process's SQL listeners (embedded mode), started once.

    The handler's own clients (upload, findings, ledger, /compute's store) use `sql_url()`; notebook
    runs get `notebook_sql_url()`: two listeners, so notebooks never hold the handler's slots.
    Cheap when already started (a dict lookup): dispatch() calls it on every request.
    """
    if not settings.embedded:
        return settings
    own = _listener("sql", settings.sql_port, settings)
    notebooks = _listener("notebook-sql", settings.notebook_sql_port, settings)
    if (settings.sql_port, settings.notebook_sql_port) == (own.port, notebooks.port):
        return settings
    return settings.model_copy(update={"sql_port": own.port, "notebook_sql_port": notebooks.port})


def _listener(purpose: str, port: int, settings: DbHandlerSettings) -> SqlListener:
    """This process's listener for (purpose, DuckDB file); restarted in a forked child (threads do not fork)."""
    import os

    from functions.settings.callers import CallerSettings
    from functions.storage.sql_listener import Limits, SqlListener

    with _lock:
        key = (purpose, settings.db_path)
        found = _listeners.get(key)
        if found is None or found.pid != os.getpid():
            limits = Limits(settings.sql_connections, settings.sql_max_body_bytes, settings.sql_timeout_s)
            try:
                # what the public gate refuses (empty passwords, no users) the loopback listeners refuse too
                trust = CallerSettings.from_env().mode == "open"
                found = SqlListener(lambda: engine(settings), settings.users, port=port, limits=limits, name=purpose,
                                    trust=trust)
            except OSError as exc:  # e.g. a configured port in use: every request says so until it is free
                log.error("SQL listener could not start", extra={"listener": purpose, "port": port, "error": str(exc)})
                raise Unavailable(f"the embedded engine's {purpose} listener cannot bind 127.0.0.1:{port} "
                                  f"({exc.strerror or exc}); free the port or set it to 0") from exc
            _listeners[key] = found
        return found


def engine(settings: DbHandlerSettings) -> Engine:
    """The process-wide embedded engine for the settings' DuckDB file, built on first use."""
    with _lock:
        found = _engines.get(settings.db_path)
        if found is None:
            import os

            from functions.storage.engine import Engine

            if settings.db_path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(settings.db_path)), exist_ok=True)
            found = _engines[settings.db_path] = Engine(settings.db_path, statement_timeout=settings.statement_timeout_s or None)
        return found
