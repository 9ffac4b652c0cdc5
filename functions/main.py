"""functions-framework source: one thin target per function (decode, call the stage's handle(), encode).

Deploy each target as its own Knative Service from one image (FUNCTION_TARGET=<name>). Nothing is
built at import time: readers, stores and engines are created on first use and cached
(functions.serving.wiring). Every request passes one gate before its target runs
(functions.serving.gate: method, probes, caller, body size) and every exception is answered from the
one error table (functions.errors, through functions.serving.answers), Flask's own errors included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import functions_framework

from functions.serving import answers, gate, wiring

if TYPE_CHECKING:
    import flask

TARGETS = ("exporter", "scraper", "dbhandler", "aicost", "aicost_metrics", "focus_ingest", "notebooks", "optimizer",
           "inference_runner")
"""Every functions-framework target of this source (FUNCTION_TARGET); a test keeps it equal to the targets defined here."""


@functions_framework.http
def exporter(request: flask.Request) -> flask.Response:
    """POST CloudEvent: run an export cycle. GET /metrics/<ns>/<name>: the snapshot (text or Arrow)."""
    from functions.stages import exporter as stage

    def run() -> flask.Response:
        if request.method in ("GET", "HEAD"):
            return _serve_snapshot(request)
        ref = answers.ref(answers.event(request))
        return answers.cycle(ref, ("io.finops.export.completed", "io.finops.export.failed"),
                      stage.handle, ref, wiring.reader(), wiring.store(), wiring.settings().state_dir / "tmp")

    return gate.serve(request, "exporter", run, get=True)


@functions_framework.http
def scraper(request: flask.Request) -> flask.Response:
    """POST CloudEvent (export.completed or a ScraperConfig tick): scrape and upload one run."""
    from functions.stages import scraper as stage

    def run() -> flask.Response:
        event = answers.event(request)
        ref = answers.ref(event)
        return answers.cycle(ref, ("io.finops.upload.completed", "io.finops.scrape.failed"),
                      stage.handle, ref, event.id, wiring.reader(), wiring.settings())

    return gate.serve(request, "scraper", run)


@functions_framework.http
def dbhandler(request: flask.Request) -> flask.Response:
    """/upload, /compute/*, and (embedded mode) CrateDB's HTTP protocol: GET / and POST /_sql.

    Its callers are database users (Basic, checked per request by the handler against its users);
    this gate adds only what authenticated-by-default means there: an empty password (Krateo's
    `crate` user) and a handler without users (trust) are refused unless FINOPS_AUTH=open.
    """
    from functions.stages.dbhandler import router

    def run() -> flask.Response:
        return router.handle(request)

    def check(callers: Any) -> None:
        if callers.settings.mode == "open":
            return
        from functions.clients.callers import basic_password
        from functions.errors import Unauthorized

        challenge = 'Basic realm="finops"'
        if basic_password(request.headers.get("Authorization")) == "":
            raise Unauthorized("an empty database password is refused (FINOPS_AUTH=open accepts Krateo's "
                               "passwordless users)", challenge)
        settings = router.current_settings()
        if not settings.users and settings.embedded:
            raise Unauthorized("this database handler has no users (FINOPS_DB_USERS={}): set users with "
                               "passwords, or FINOPS_AUTH=open to accept anyone", challenge)
        if request.path.rstrip("/") not in gate.PROBES:  # the banner is open; everything else is a database user's
            router.check_credentials(request.headers.get("Authorization"), settings)

    return gate.serve(request, "dbhandler", run, methods=None, check=check)


@functions_framework.http
def aicost(request: flask.Request) -> flask.Response:
    """POST one or a batch of io.finops.aicost.usage CloudEvents: price, store once, evaluate budgets."""
    from functions.stages import aicost_ingest as stage

    def run() -> flask.Response:
        settings = wiring.aicost_settings()
        items, batch = stage.decode(dict(request.headers), request.get_data())
        db = stage.database(settings, wiring.reader(), wiring.AICOST_DBS)
        out = stage.handle(items, db, wiring.reader(), settings, stage.sink_publisher(settings), batch=batch)
        return answers.reply("io.finops.aicost.recorded", "aicost", out.body())

    return gate.serve(request, "aicost", run)


@functions_framework.http
def aicost_metrics(request: flask.Request) -> flask.Response:
    """GET /metrics: Prometheus exposition of the durable AI cost totals and budget burn (GET /: probe)."""
    import flask

    from functions.stages import aicost_ingest
    from functions.stages import aicost_metrics as stage

    def run() -> flask.Response:
        if request.path.rstrip("/") != "/metrics":
            raise answers.no_such_path(request, "GET /metrics")
        settings = wiring.aicost_settings()
        db = aicost_ingest.database(settings, wiring.reader(), wiring.AICOST_DBS)
        ctype, body = stage.handle(db, wiring.reader(), settings)
        return flask.Response(body, 200, content_type=ctype)

    return gate.serve(request, "aicost_metrics", run, methods=("GET", "HEAD"), get=True)


@functions_framework.http
def focus_ingest(request: flask.Request) -> flask.Response:
    """POST CloudEvent io.finops.cr.applied/deleted for a FocusConfig: write or remove its FOCUS row."""
    from functions import events
    from functions.settings.focus import FocusSettings
    from functions.stages import focus_ingest as stage

    def run() -> flask.Response:
        event = answers.event(request)
        out = stage.handle(event.type, event.subject, event.data, wiring.reader(), FocusSettings.from_env(), wiring.FOCUS_DBS)
        return answers.reply(events.CR_RECONCILED, event.subject or out.resource, out.body())

    return gate.serve(request, "focus_ingest", run)


@functions_framework.http
def notebooks(request: flask.Request) -> flask.Response:
    """POST CloudEvent io.finops.cr.applied/deleted for a Notebook: upload, overwrite or delete it in the handler."""
    from functions import events
    from functions.settings.notebooks import NotebookSettings
    from functions.stages import notebooks as stage

    def run() -> flask.Response:
        event = answers.event(request)
        out = stage.handle(event.type, event.subject, event.data, wiring.reader(), NotebookSettings.from_env())
        return answers.reply(events.CR_RECONCILED, event.subject or "Notebook", out.body())

    return gate.serve(request, "notebooks", run)


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
    from functions.stages.optimizer import admission, deps, label, optimize

    def cloudevent() -> bool:
        return bool(request.headers.get("ce-specversion")) or request.mimetype == "application/cloudevents+json"

    def check(callers: Any) -> None:
        from functions.errors import Unauthorized

        if request.method in ("GET", "HEAD"):
            if request.path.rstrip("/") != "/optimize":
                raise answers.no_such_path(request, "GET /optimize")
            auth = request.headers.get("Authorization") or ""
            if callers.settings.mode != "open" and not auth.lower().startswith("basic "):
                raise Unauthorized("GET /optimize needs the database handler's Basic credentials (Authorization: "
                                   "Basic): they are forwarded to the handler, which checks them", 'Basic realm="finops"')
            return
        if cloudevent() or not gate.over_tls(request):
            callers.check(request.headers.get("Authorization"))

    def run() -> flask.Response:
        if request.method in ("GET", "HEAD"):
            return answers.json_ok(optimize.handle(request.args, request.headers.get("Authorization"), deps.current(wiring.reader)))
        if cloudevent():
            labelled = label.handle(answers.event(request).data, deps.current(wiring.reader).labeller, datetime.now(UTC))
            return answers.reply(events.OPTIMIZATION_LABELLED, "optimizer-day2", labelled)
        body = request.get_data()
        try:
            built = deps.current(wiring.reader)
        except Exception as exc:  # noqa: BLE001 - an admission is answered allowed whatever is broken
            from functions.errors import FinopsError
            from functions.logs import get_logger

            get_logger("main").exception("optimizer not ready")
            why = exc.message if isinstance(exc, FinopsError) else f"{type(exc).__name__}: see the optimizer's logs"
            return answers.json_ok(admission.fail_open(body, f"optimizer not ready: {why}"))
        if not built.settings.admission:
            return answers.json_ok(admission.fail_open(body, "this instance does not serve admissions (FINOPS_OPTIMIZER_ADMISSION=false)"))
        return answers.json_ok(admission.handle(body, built))

    return gate.serve(request, "optimizer", run, get=True, check=check)


@functions_framework.http
def inference_runner(request: flask.Request) -> flask.Response:
    """POST CloudEvent (an InferenceRun applied, or its schedule's ping): run its Contract once (input
    notebook -> KServe v2 infer -> output notebook); the outcome in the run's status and the reply."""
    from functions.settings.inference import InferenceRunnerSettings
    from functions.stages import inference_runner as stage

    def run() -> flask.Response:
        event = answers.event(request)
        out = stage.handle(event.type, event.subject, event.data, event.id, wiring.reader(), wiring.status_writer(),
                           InferenceRunnerSettings.from_env())
        return answers.empty() if out is None else answers.reply(out.type, out.subject, out.data)

    return gate.serve(request, "inference_runner", run)


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
        from functions.errors import InvalidInput

        raise InvalidInput("use GET /metrics/<namespace>/<name>")
    ctype, body = stage.serve(ref, request.headers.get("Accept", ""), wiring.store())
    if body is None:
        return flask.Response(b"", 200, content_type=ctype, headers={"X-Finops-Snapshot": "none"})
    return flask.Response(body, 200, content_type=ctype, headers={"X-Finops-Snapshot": "present"})


def _on_flask_error(exc: Exception) -> flask.Response:
    """functions-framework's error handler: whatever Flask raises outside our targets becomes JSON."""
    return answers.error_response(exc)


# Registered on the app functions-framework builds for this source (a no-op when main is only imported);
# the 500 handler replaces functions-framework's, which answers the exception's text.
_register_error_handler: Any = functions_framework.errorhandler
for _kind in (Exception, 500):
    _register_error_handler(_kind)(_on_flask_error)
