"""functions-framework source: one thin target per function (decode, call handle(), encode).

Deploy each target as its own Knative Service from one image (FUNCTION_TARGET=<name>). Nothing is
built at import time: readers, stores and engines are created on first use and cached.

Every request passes one gate (`_serve`) before its handler runs, in this order, on headers only:
the method (405), the probes `GET /` and `/healthz` (always open: they reveal nothing), the caller
(functions.clients.callers: 401 + `WWW-Authenticate: Bearer`), then the body size (413 naming the
limit and FINOPS_MAX_BODY_BYTES; the limit is also set on the request, so a chunked body is cut off
while it is read). Only then is the body read. Every answer is JSON, Flask's own errors included
(unknown paths, 405, 413, 500: the error handlers at the end), and a refusal is a streamed response,
because functions-framework reads the whole request body after every non-streamed response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import functions_framework

if TYPE_CHECKING:
    import flask

    from functions.clients.kube import ResourceReader, StatusWriter
    from functions.storage.snapshots import SnapshotStore

TARGETS = ("exporter", "scraper", "dbhandler", "aicost", "aicost_metrics", "focus_ingest", "notebooks", "optimizer")


@functions_framework.http
def exporter(request: flask.Request) -> flask.Response:
    """POST CloudEvent: run an export cycle. GET /metrics/<ns>/<name>: the snapshot (text or Arrow)."""
    from functions.stages import exporter as stage

    def run() -> flask.Response:
        if request.method in ("GET", "HEAD"):
            return _serve_snapshot(request)
        ref = _ref(_event(request))
        return _cycle(ref, ("io.finops.export.completed", "io.finops.export.failed"),
                      stage.handle, ref, _reader(), _store(), _settings().state_dir / "tmp")

    return _serve(request, "exporter", run, get=True)


@functions_framework.http
def scraper(request: flask.Request) -> flask.Response:
    """POST CloudEvent (export.completed or a ScraperConfig tick): scrape and upload one run."""
    from functions.stages import scraper as stage

    def run() -> flask.Response:
        event = _event(request)
        ref = _ref(event)
        return _cycle(ref, ("io.finops.upload.completed", "io.finops.scrape.failed"),
                      stage.handle, ref, event.id, _reader(), _settings())

    return _serve(request, "scraper", run)


@functions_framework.http
def dbhandler(request: flask.Request) -> flask.Response:
    """/upload, /compute/*, and (embedded mode) CrateDB's HTTP protocol: GET / and POST /_sql.

    Its callers are database users (Basic, checked per request by the handler against its users);
    this gate adds only what authenticated-by-default means there: an empty password (Krateo's
    `crate` user) and a handler without users (trust) are refused unless FINOPS_AUTH=open.
    """
    from functions.stages.dbhandler import service

    def run() -> flask.Response:
        return service.wsgi_answer(request)

    def check(gate: Any) -> None:
        if gate.settings.mode == "open":
            return
        from functions.clients.callers import basic_password
        from functions.errors import Unauthorized

        challenge = 'Basic realm="finops"'
        if basic_password(request.headers.get("Authorization")) == "":
            raise Unauthorized("an empty database password is refused (FINOPS_AUTH=open accepts Krateo's "
                               "passwordless users)", challenge)
        settings = service.current_settings()
        if not settings.users and settings.embedded:
            raise Unauthorized("this database handler has no users (FINOPS_DB_USERS={}): set users with "
                               "passwords, or FINOPS_AUTH=open to accept anyone", challenge)
        if request.path.rstrip("/") not in _PROBES:  # the banner is open; everything else is a database user's
            service.check_credentials(request.headers.get("Authorization"), settings)

    return _serve(request, "dbhandler", run, methods=None, check=check)


@functions_framework.http
def aicost(request: flask.Request) -> flask.Response:
    """POST one or a batch of io.finops.aicost.usage CloudEvents: price, store once, evaluate budgets."""
    from functions.stages import aicost_ingest as stage

    def run() -> flask.Response:
        settings = _aicost_settings()
        items, batch = stage.decode(dict(request.headers), request.get_data())
        db = stage.database(settings, _reader(), _AICOST_DBS)
        out = stage.handle(items, db, _reader(), settings, stage.sink_publisher(settings), batch=batch)
        return _reply("io.finops.aicost.recorded", "aicost", out.body())

    return _serve(request, "aicost", run)


_AICOST_DBS: dict[Any, Any] = {}


@functions_framework.http
def aicost_metrics(request: flask.Request) -> flask.Response:
    """GET /metrics: Prometheus exposition of the durable AI cost totals and budget burn (GET /: probe)."""
    import flask

    from functions.stages import aicost_ingest
    from functions.stages import aicost_metrics as stage

    def run() -> flask.Response:
        if request.path.rstrip("/") != "/metrics":
            raise _no_such_path(request, "GET /metrics")
        settings = _aicost_settings()
        db = aicost_ingest.database(settings, _reader(), _AICOST_DBS)
        ctype, body = stage.handle(db, _reader(), settings)
        return flask.Response(body, 200, content_type=ctype)

    return _serve(request, "aicost_metrics", run, methods=("GET", "HEAD"), get=True)


@lru_cache(maxsize=1)
def _aicost_settings() -> Any:
    from functions.models.aicost import AICostSettings

    return AICostSettings.from_env()


@functions_framework.http
def focus_ingest(request: flask.Request) -> flask.Response:
    """POST CloudEvent io.finops.cr.applied/deleted for a FocusConfig: write or remove its FOCUS row."""
    from functions import events
    from functions.models.focus import FocusSettings
    from functions.stages import focus_ingest as stage

    def run() -> flask.Response:
        event = _event(request)
        out = stage.handle(event.type, event.subject, event.data, _reader(), FocusSettings.from_env(), _FOCUS_DBS)
        return _reply(events.CR_RECONCILED, event.subject or out.resource, out.body())

    return _serve(request, "focus_ingest", run)


_FOCUS_DBS: dict[Any, Any] = {}


@functions_framework.http
def notebooks(request: flask.Request) -> flask.Response:
    """POST CloudEvent io.finops.cr.applied/deleted for a Notebook: upload, overwrite or delete it in the handler."""
    from functions import events
    from functions.models.notebooks import NotebookSettings
    from functions.stages import notebooks as stage

    def run() -> flask.Response:
        event = _event(request)
        out = stage.handle(event.type, event.subject, event.data, _reader(), NotebookSettings.from_env())
        return _reply(events.CR_RECONCILED, event.subject or "Notebook", out.body())

    return _serve(request, "notebooks", run)


@functions_framework.http
def optimizer(request: flask.Request) -> flask.Response:
    """POST AdmissionReview (the compositions' webhook, fail-open); GET /optimize (Krateo's moving-window
    contract); POST CloudEvent from a PingSource (periodic day-2: label the listed compositions).

    Callers: the ping carries the caller token like every event. GET /optimize carries the database
    handler's Basic credentials (Krateo's contract), which it forwards to the handler: the handler
    checks them, so no cost window is read for a caller without database credentials. An
    AdmissionReview comes from the Kubernetes API server, which calls webhooks over TLS without any
    token (unless each cluster's AdmissionConfiguration is set up for it): over TLS (the webhook
    Deployment) one is answered without a caller token; it writes nothing and only says what would
    be patched into the reviewed object, fail-open. Over plain HTTP (the local stack, the Knative
    Service) an admission needs the caller token like any other call.
    """
    from datetime import UTC, datetime

    from functions import events
    from functions.stages import optimizer as stage

    def cloudevent() -> bool:
        return bool(request.headers.get("ce-specversion")) or request.mimetype == "application/cloudevents+json"

    def check(gate: Any) -> None:
        from functions.errors import Unauthorized

        if request.method in ("GET", "HEAD"):
            if request.path.rstrip("/") != "/optimize":
                raise _no_such_path(request, "GET /optimize")
            auth = request.headers.get("Authorization") or ""
            if gate.settings.mode != "open" and not auth.lower().startswith("basic "):
                raise Unauthorized("GET /optimize needs the database handler's Basic credentials (Authorization: "
                                   "Basic): they are forwarded to the handler, which checks them", 'Basic realm="finops"')
            return
        if cloudevent() or not _over_tls(request):
            gate.check(request.headers.get("Authorization"))

    def run() -> flask.Response:
        if request.method in ("GET", "HEAD"):
            return _json(stage.optimize_endpoint(request.args, request.headers.get("Authorization"), _optimizer()))
        if cloudevent():
            labelled = stage.ping(_event(request).data, _optimizer().objects, datetime.now(UTC))
            return _reply(events.OPTIMIZATION_LABELLED, "optimizer-day2", labelled)
        body = request.get_data()
        try:
            deps = _optimizer()
        except Exception as exc:  # noqa: BLE001 - an admission is answered allowed whatever is broken
            from functions.errors import FinopsError
            from functions.logs import get_logger

            get_logger("main").exception("optimizer not ready")
            why = exc.message if isinstance(exc, FinopsError) else f"{type(exc).__name__}: see the optimizer's logs"
            return _json(stage.fail_open(body, f"optimizer not ready: {why}"))
        if not deps.settings.admission:
            return _json(stage.fail_open(body, "this instance does not serve admissions (FINOPS_OPTIMIZER_ADMISSION=false)"))
        return _json(stage.review(body, deps))

    return _serve(request, "optimizer", run, get=True, check=check)


def _over_tls(request: flask.Request) -> bool:
    """Whether THIS connection is TLS (the webhook Deployment's gunicorn terminates it), read from the
    socket itself: `request.is_secure` also believes X-Forwarded-Proto/-Ssl, which gunicorn trusts from
    127.0.0.1, where every request comes from behind Knative's queue-proxy or on the local stack."""
    import ssl

    return isinstance(request.environ.get("gunicorn.socket"), ssl.SSLSocket)


_OPTIMIZER: list[Any] = []
_OPTIMIZER_LOCK = threading.Lock()


def _optimizer() -> Any:
    """The optimizer's dependencies, built once even when the first admissions arrive together."""
    if not _OPTIMIZER:
        with _OPTIMIZER_LOCK:
            if not _OPTIMIZER:
                _OPTIMIZER.append(_build_optimizer())
    return _OPTIMIZER[0]


def _build_optimizer() -> Any:
    from functions.clients import kube
    from functions.clients.policy import engine_from_env
    from functions.models.optimizer import OptimizerSettings
    from functions.stages import optimizer as stage

    settings = OptimizerSettings.from_env()
    reader = _reader()
    carbon = None
    if settings.carbon_db_url:
        from functions.clients.db import Database

        db = Database(settings.carbon_db_url, settings.carbon_db_user or None, settings.carbon_db_password or None,
                      timeout=10.0)  # a stuck database must not hold an optimizer thread for a minute
        carbon = stage.SqlCarbonData(db, settings.carbon_forecast_table, settings.carbon_history_table)
    publish = None
    if settings.sink:
        from functions import events
        from functions.clients import sink

        def publish(event: Any) -> None:
            headers, body = events.to_binary(event)
            sink.post_event(settings.sink, headers, body, retries=1, timeout=5.0)

    objects = kube.KubeObjects(reader) if isinstance(reader, kube.KubeApiReader) else None
    policy = engine_from_env({"FINOPS_OPA_URL": settings.opa_url, "FINOPS_POLICY_DIR": settings.policy_dir})
    return stage.Deps(settings=settings, reader=reader, policy=policy, objects=objects, carbon=carbon,
                      publish=publish, cache=stage.WindowCache(settings.cache_ttl_s))


def _json(body: dict[str, Any]) -> flask.Response:
    import flask
    import orjson

    return flask.Response(orjson.dumps(body), 200, content_type="application/json")


# ---- shared wiring (private) -------------------------------------------------------------------


def _serve_snapshot(request: flask.Request) -> flask.Response:
    import flask

    from functions.models.refs import ConfigRef
    from functions.stages import exporter as stage

    parts = [p for p in request.path.split("/") if p]
    if len(parts) == 3 and parts[0] == "metrics":
        ref = ConfigRef("ExporterScraperConfig", parts[1], parts[2])
    elif request.args.get("config"):
        ref = ConfigRef.parse(request.args["config"], default_kind="ExporterScraperConfig")
    else:
        return flask.Response('{"error": "use GET /metrics/<namespace>/<name>"}', 400, content_type="application/json")
    ctype, body = stage.serve(ref, request.headers.get("Accept", ""), _store())
    if body is None:
        return flask.Response(b"", 200, content_type=ctype, headers={"X-Finops-Snapshot": "none"})
    return flask.Response(body, 200, content_type=ctype, headers={"X-Finops-Snapshot": "present"})


def _cycle(ref: Any, replies: tuple[str, str], handle: Callable[..., Any], *args: Any) -> flask.Response:
    """An export or scrape cycle, its outcome written into the CR's status (Ready/Synced).

    Bad input (payload, config, names) fails the cycle, not the request: Ready=False and a `failed`
    reply, answered 200 (a 400 would dead-letter a tick that was fine). Unavailable stays 503 (retried).
    """
    from functions.errors import InvalidInput
    from functions.logs import get_logger

    completed, failed = replies
    try:
        result = handle(*args)
    except InvalidInput as exc:
        errors = [e.to_dict() for e in exc.errors]
        get_logger("main").warning("cycle failed", extra={"config": str(ref), "error": exc.message, "errors": errors})
        _write_status(ref, False, _failure_message(exc))
        return _reply(failed, str(ref), {"config": str(ref), "error": exc.message, "errors": errors})
    if result is None:
        return _empty()
    message, extra = result.status()
    _write_status(ref, True, message, extra, result.degraded(), result.owns_degraded)
    return _reply(completed, str(ref), result.event_data())


def _failure_message(exc: Any, limit: int = 5) -> str:
    """One line: the error, then its first bad fields (`loc: msg`) and how many more."""
    fields = [f"{e.loc}: {e.msg}" if e.loc else e.msg for e in exc.errors]
    more = f"; and {len(fields) - limit} more" if len(fields) > limit else ""
    return f"{exc.message}" + (f" ({'; '.join(fields[:limit])}{more})" if fields else "")


def _write_status(ref: Any, ok: bool, message: str, extra: dict[str, Any] | None = None,
                  rejected: str | None = None, owns_degraded: bool = True) -> None:
    """Best effort: the answer is the cycle's outcome; a status that cannot be written is logged only.
    `rejected`: the Degraded (RowsRejected) message of a cycle that kept rows out; `owns_degraded`:
    whether this cycle decides Degraded at all (an export followed by a scrape does not)."""
    from functions.clients import kube
    from functions.errors import FinopsError
    from functions.logs import get_logger

    try:
        kube.write_outcome(_reader(), _status_writer(), ref.kind, ref.namespace, ref.name, ok, message, extra, rejected,
                           owns_degraded)
    except FinopsError as exc:
        get_logger("main").warning("status not written", extra={"config": str(ref), "error": str(exc)})


def _event(request: flask.Request) -> Any:
    from functions import events

    return events.from_http(dict(request.headers), request.get_data())


def _ref(event: Any) -> Any:
    from functions.models.refs import ConfigRef

    return ConfigRef.from_event(event.subject, event.data)


def _reply(type_: str, subject: str, data: dict[str, Any]) -> flask.Response:
    """Answer with a binary-mode CloudEvent: Knative's Broker (and the local one) publishes replies."""
    import flask

    from functions import events

    settings = _settings()
    headers, body = events.to_binary(events.new(type_, f"/finops/{settings.source_service or 'local'}", data, subject=subject))
    return flask.Response(body, 200, headers=headers)


def _health(name: str) -> flask.Response:
    """GET answers for probes: nothing is built, so a cold start stays cheap."""
    import flask

    return flask.Response(f'{{"function": "{name}", "ok": true}}', 200, content_type="application/json")


def _empty() -> flask.Response:
    """Nothing to do: an empty 200 (a body that is not a CloudEvent would fail the delivery in Knative)."""
    import flask

    return flask.Response(b"", 200, headers={"X-Finops-Result": "nothing to do"})


# ---- the gate: method, probes, caller, body size; then the handler --------------------------------

_PROBES = ("", "/healthz")
_EVENT_METHODS = ("GET", "HEAD", "POST")


def _serve(request: flask.Request, target: str, run: Callable[[], flask.Response], *,
           methods: tuple[str, ...] | None = _EVENT_METHODS, get: bool = False,
           check: Callable[[Any], None] | None = None) -> flask.Response:
    """One request through the gate (module doc), then `run`; every exception becomes a JSON answer.

    `methods`: those allowed (None: the handler answers every method itself); `get`: GET paths other
    than the probes are endpoints of this target (else 404); `check`: replaces the caller check.
    """
    from functions.errors import TooLarge

    try:
        gate = _gate()
        limit = gate.settings.body_limit(target)
        # Set before anything touches the body. One byte over the limit: werkzeug silently stops a
        # chunked body AT its limit, so the extra byte is how an oversized one is told from a full one.
        request.max_content_length = limit + 1
        if methods is not None and request.method not in methods:
            return _error_response(*_method_not_allowed(request, methods))
        if any(not c.isprintable() for c in request.path):
            return _error_response(*_control_character(request.path))
        probe = request.method in ("GET", "HEAD") and request.path.rstrip("/") in _PROBES
        if probe and target == "dbhandler":
            return run()  # its GET / is CrateDB's banner (the crate client reads it), open like a probe
        if probe:
            return _health(target)
        if check is not None:
            check(gate)
        else:
            if request.method in ("GET", "HEAD") and not get:
                raise _no_such_path(request, "POST / (a CloudEvent)")
            gate.check(request.headers.get("Authorization"))
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(limit, "FINOPS_MAX_BODY_BYTES")
        if request.content_length is None and len(request.get_data()) > limit:  # chunked: read (cached), bounded
            raise TooLarge(limit, "FINOPS_MAX_BODY_BYTES")
        return run()
    except Exception as exc:  # noqa: BLE001 - the one place that turns everything into an answer
        return _error_response(*_refusal(exc))


@lru_cache(maxsize=1)
def _gate() -> Any:
    """This process's caller gate, built (and what it accepts logged, loudly when nothing) on the first request."""
    from functions.clients.callers import gate_from_env

    return gate_from_env()


def _refusal(exc: BaseException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(body, status, headers) of any exception, logged: refusals as warnings, failures with the traceback."""
    from werkzeug.exceptions import HTTPException

    from functions.errors import FinopsError, http_answer
    from functions.logs import get_logger

    if isinstance(exc, HTTPException):
        return _http_error_answer(exc)
    body, status, headers = http_answer(exc)  # logs an unexpected exception under its correlation id
    log = get_logger("main")
    if isinstance(exc, FinopsError) and exc.status < 500:
        log.warning("request refused", extra={"status": status, **body})
    elif isinstance(exc, FinopsError):
        log.exception("request failed", extra={"status": status})
    return body, status, headers


def _error_response(body: dict[str, Any], status: int, headers: dict[str, str]) -> flask.Response:
    """A JSON answer, streamed: functions-framework then does not read the rest of the request body
    (it reads it after every non-streamed response, which would take in a refused 200 MB body)."""
    import flask
    import orjson

    payload = orjson.dumps(body)
    return flask.Response(iter((payload,)), status, headers={**headers, "Content-Length": str(len(payload))},
                          content_type="application/json")


def _no_such_path(request: flask.Request, endpoints: str) -> Exception:
    from functions.errors import NotFound

    return NotFound(f"no such endpoint: {request.method} {_printable(request.path)} (this function serves "
                    f"{endpoints}; probes: GET / and GET /healthz)")


def _method_not_allowed(request: flask.Request, methods: tuple[str, ...]) -> tuple[dict[str, Any], int, dict[str, str]]:
    return ({"error": f"method {_printable(request.method)} is not allowed here (allowed: {', '.join(methods)})"},
            405, {"Allow": ", ".join(methods)})


def _printable(text: str, limit: int = 200) -> str:
    """Text from a request, safe to echo: control characters escaped, length capped."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def _control_character(path: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A path with a control character (%0A, %00, ...): no endpoint or name has one, so a 400 saying so."""
    return {"error": f"bad path: it contains a control character (e.g. %0A or %00), which no endpoint or name "
                     f"allows: {_printable(path)}"}, 400, {}


def _http_error_answer(exc: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Flask's and werkzeug's own errors (no route, method, body too large, a crash) as JSON answers."""
    import flask
    from werkzeug.exceptions import InternalServerError, NotFound, RequestEntityTooLarge

    from functions.errors import TooLarge, http_answer

    if isinstance(exc, RequestEntityTooLarge):
        limit = flask.request.max_content_length if flask.has_request_context() else None
        too = TooLarge(max(int(limit or 1) - 1, 0), "FINOPS_MAX_BODY_BYTES")  # _serve sets the limit + 1
        return too.body(), 413, {}
    if isinstance(exc, InternalServerError):
        return http_answer(exc.original_exception or exc)
    path = flask.request.path if flask.has_request_context() else ""
    if isinstance(exc, NotFound) and any(not c.isprintable() for c in path):
        return _control_character(path)
    code = int(getattr(exc, "code", None) or 500)
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    what = f"no such endpoint: {_printable(path)}" if isinstance(exc, NotFound) else str(getattr(exc, "name", "error"))
    return {"error": f"{what} (HTTP {code})"}, code, headers


def _on_flask_error(exc: Exception) -> flask.Response:
    """functions-framework's error handler: whatever Flask raises outside our targets becomes JSON."""
    return _error_response(*_refusal(exc))


# Registered on the app functions-framework builds for this source (a no-op when main is only imported);
# the 500 handler replaces functions-framework's, which answers the exception's text.
_register_error_handler: Any = functions_framework.errorhandler
for _kind in (Exception, 500):
    _register_error_handler(_kind)(_on_flask_error)


@lru_cache(maxsize=1)
def _settings() -> Any:
    from functions.settings import CollectionSettings

    return CollectionSettings.from_env()


@lru_cache(maxsize=1)
def _reader() -> ResourceReader:
    from functions.clients import kube

    settings = _settings()
    return kube.LocalReader(settings.state_dir) if settings.kube == "local" else kube.KubeApiReader()


@lru_cache(maxsize=1)
def _status_writer() -> StatusWriter:
    from functions.clients import kube

    reader = _reader()
    if isinstance(reader, kube.KubeApiReader):
        return kube.KubeStatusWriter(reader)
    return kube.LocalStatusWriter(_settings().state_dir)


@lru_cache(maxsize=1)
def _store() -> SnapshotStore:
    from functions.storage import snapshots

    settings = _settings()
    if settings.snapshot_store == "database":
        from functions.clients.db import connect

        db = connect(settings.snapshot_db_url, settings.snapshot_db_user, settings.snapshot_db_password)
        return snapshots.DatabaseSnapshotStore(db)
    return snapshots.FileSnapshotStore(settings.state_dir / "snapshots")
