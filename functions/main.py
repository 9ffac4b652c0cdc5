"""functions-framework source: one thin target per function (decode, call handle(), encode).

Deploy each target as its own Knative Service from one image (FUNCTION_TARGET=<name>). Nothing is
built at import time: readers, stores and engines are created on first use and cached.
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
        if request.method == "GET" and request.path.rstrip("/") in ("", "/healthz"):
            return _health("exporter")
        if request.method == "GET":
            return _serve_snapshot(request)
        ref = _ref(_event(request))
        return _cycle(ref, ("io.finops.export.completed", "io.finops.export.failed"),
                      stage.handle, ref, _reader(), _store(), _settings().state_dir / "tmp")

    return _answer(run)


@functions_framework.http
def scraper(request: flask.Request) -> flask.Response:
    """POST CloudEvent (export.completed or a ScraperConfig tick): scrape and upload one run."""
    from functions.stages import scraper as stage

    def run() -> flask.Response:
        if request.method == "GET":
            return _health("scraper")
        event = _event(request)
        ref = _ref(event)
        return _cycle(ref, ("io.finops.upload.completed", "io.finops.scrape.failed"),
                      stage.handle, ref, event.id, _reader(), _settings())

    return _answer(run)


@functions_framework.http
def dbhandler(request: flask.Request) -> flask.Response:
    """/upload, /compute/*, and (embedded mode) CrateDB's HTTP protocol: GET / and POST /_sql."""
    from functions.stages.dbhandler import service

    return service.wsgi_answer(request)


@functions_framework.http
def aicost(request: flask.Request) -> flask.Response:
    """POST one or a batch of io.finops.aicost.usage CloudEvents: price, store once, evaluate budgets."""
    from functions.stages import aicost_ingest as stage

    def run() -> flask.Response:
        if request.method == "GET":
            return _health("aicost")
        settings = _aicost_settings()
        items, batch = stage.decode(dict(request.headers), request.get_data())
        db = stage.database(settings, _reader(), _AICOST_DBS)
        out = stage.handle(items, db, _reader(), settings, stage.sink_publisher(settings), batch=batch)
        return _reply("io.finops.aicost.recorded", "aicost", out.body())

    return _answer(run)


_AICOST_DBS: dict[Any, Any] = {}


@functions_framework.http
def aicost_metrics(request: flask.Request) -> flask.Response:
    """GET /metrics: Prometheus exposition of the durable AI cost totals and budget burn (GET /: probe)."""
    import flask

    from functions.stages import aicost_ingest
    from functions.stages import aicost_metrics as stage

    def run() -> flask.Response:
        if request.path.rstrip("/") in ("", "/healthz"):
            return _health("aicost_metrics")
        settings = _aicost_settings()
        db = aicost_ingest.database(settings, _reader(), _AICOST_DBS)
        ctype, body = stage.handle(db, _reader(), settings)
        return flask.Response(body, 200, content_type=ctype)

    return _answer(run)


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
        if request.method == "GET":
            return _health("focus_ingest")
        event = _event(request)
        out = stage.handle(event.type, event.subject, event.data, _reader(), FocusSettings.from_env(), _FOCUS_DBS)
        return _reply(events.CR_RECONCILED, event.subject or out.resource, out.body())

    return _answer(run)


_FOCUS_DBS: dict[Any, Any] = {}


@functions_framework.http
def notebooks(request: flask.Request) -> flask.Response:
    """POST CloudEvent io.finops.cr.applied/deleted for a Notebook: upload, overwrite or delete it in the handler."""
    from functions import events
    from functions.models.notebooks import NotebookSettings
    from functions.stages import notebooks as stage

    def run() -> flask.Response:
        if request.method == "GET":
            return _health("notebooks")
        event = _event(request)
        out = stage.handle(event.type, event.subject, event.data, _reader(), NotebookSettings.from_env())
        return _reply(events.CR_RECONCILED, event.subject or "Notebook", out.body())

    return _answer(run)


@functions_framework.http
def optimizer(request: flask.Request) -> flask.Response:
    """POST AdmissionReview (the compositions' webhook, fail-open); GET /optimize (Krateo's moving-window
    contract); POST CloudEvent from a PingSource (periodic day-2: label the listed compositions)."""
    from datetime import UTC, datetime

    from functions import events
    from functions.stages import optimizer as stage

    def run() -> flask.Response:
        path = request.path.rstrip("/")
        if request.method == "GET" and path in ("", "/healthz"):
            return _health("optimizer")
        if request.method == "GET" and path == "/optimize":
            return _json(stage.optimize_endpoint(request.args, request.headers.get("Authorization"), _optimizer()))
        if request.headers.get("ce-specversion") or request.mimetype == "application/cloudevents+json":
            labelled = stage.ping(_event(request).data, _optimizer().objects, datetime.now(UTC))
            return _reply(events.OPTIMIZATION_LABELLED, "optimizer-day2", labelled)
        body = request.get_data()
        try:
            deps = _optimizer()
        except Exception as exc:  # noqa: BLE001 - an admission is answered allowed whatever is broken
            return _json(stage.fail_open(body, f"optimizer not ready: {exc}"))
        if not deps.settings.admission:
            return _json(stage.fail_open(body, "this instance does not serve admissions (FINOPS_OPTIMIZER_ADMISSION=false)"))
        return _json(stage.review(body, deps))

    return _answer(run)


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


def _answer(run: Any) -> flask.Response:
    """Every exception becomes a JSON answer with retry meaning; a function never crashes on input."""
    import flask
    import orjson

    from functions.errors import FinopsError, http_answer
    from functions.logs import get_logger

    try:
        response: flask.Response = run()
        return response
    except Exception as exc:  # noqa: BLE001 - the one place that turns everything into an answer
        body, status, headers = http_answer(exc)
        log = get_logger("main")
        if isinstance(exc, FinopsError) and exc.status < 500:
            log.warning("request refused", extra={"status": status, **body})
        else:
            log.exception("request failed", extra={"status": status})
        return flask.Response(orjson.dumps(body), status, headers=headers, content_type="application/json")


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
