"""How every target answers: CloudEvent replies (Knative's Broker publishes them), probes, "nothing
to do", export and scrape cycles (their outcome written into the CR's status), and every exception
as a JSON answer from the one error table (functions.errors), Flask's and werkzeug's own included.

A cycle is the one deliberate exception to the table: bad input fails the cycle, not the request
(Ready=False and a `failed` reply, answered 200), because a 400 would dead-letter a tick that was fine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.serving import wiring

if TYPE_CHECKING:
    import flask


def reply(type_: str, subject: str, data: dict[str, Any]) -> flask.Response:
    """Answer with a binary-mode CloudEvent: Knative's Broker (and the local one) publishes replies."""
    import flask

    from functions import events

    settings = wiring.settings()
    headers, body = events.to_binary(events.new(type_, f"/finops/{settings.source_service or 'local'}", data, subject=subject))
    return flask.Response(body, 200, headers=headers)


def health(name: str) -> flask.Response:
    """GET answers for probes: nothing is built, so a cold start stays cheap."""
    import flask

    return flask.Response(f'{{"function": "{name}", "ok": true}}', 200, content_type="application/json")


def empty() -> flask.Response:
    """Nothing to do: an empty 200 (a body that is not a CloudEvent would fail the delivery in Knative)."""
    import flask

    return flask.Response(b"", 200, headers={"X-Finops-Result": "nothing to do"})


def json_ok(body: dict[str, Any]) -> flask.Response:
    import flask
    import orjson

    return flask.Response(orjson.dumps(body), 200, content_type="application/json")


def error_response(exc: BaseException) -> flask.Response:
    """A JSON answer, streamed: functions-framework then does not read the rest of the request body
    (it reads it after every non-streamed response, which would take in a refused 200 MB body)."""
    import flask
    import orjson

    got = refusal(exc)
    payload = orjson.dumps(got.body)
    return flask.Response(iter((payload,)), got.status, headers={**got.headers, "Content-Length": str(len(payload))},
                          content_type="application/json")


def refusal(exc: BaseException) -> Any:
    """The answer to any exception, from the one error table, logged (refusals as warnings, failures
    with the traceback). Flask's and werkzeug's own errors are first turned into ours."""
    from functions.errors import answered

    return answered(ours(exc), "main")


def ours(exc: BaseException) -> BaseException:
    """Flask's and werkzeug's own errors (no route, method, body too large, a crash) as ours; any other
    werkzeug code (none is raised before a target runs) answers as bad input (4xx) or ours (5xx)."""
    import flask
    from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, RequestEntityTooLarge

    from functions import errors

    if not isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        limit = flask.request.max_content_length if flask.has_request_context() else None
        return errors.TooLarge(max(int(limit or 1) - 1, 0), "FINOPS_MAX_BODY_BYTES")  # serve sets the limit + 1
    if isinstance(exc, InternalServerError):
        return exc.original_exception or exc
    path = flask.request.path if flask.has_request_context() else ""
    if isinstance(exc, NotFound) and any(not c.isprintable() for c in path):
        return control_character(path)
    if isinstance(exc, NotFound):
        return errors.NotFound(f"no such endpoint: {printable(path)} (HTTP 404)")
    if exc.code == 405:
        allow = tuple(m.strip() for k, v in exc.get_headers() if k.lower() == "allow" for m in v.split(","))
        return errors.MethodNotAllowed(f"{exc.name} (HTTP 405)", allow)
    if exc.code is not None and exc.code < 500:
        return errors.InvalidInput(f"{exc.name} (HTTP {exc.code})")
    return errors.FinopsError(f"{exc.name} (HTTP {exc.code})")


def no_such_path(request: flask.Request, endpoints: str) -> Exception:
    from functions.errors import NotFound

    return NotFound(f"no such endpoint: {request.method} {printable(request.path)} (this function serves "
                    f"{endpoints}; probes: GET / and GET /healthz)")


def method_not_allowed(request: flask.Request, methods: tuple[str, ...]) -> Exception:
    from functions.errors import MethodNotAllowed

    return MethodNotAllowed(f"method {printable(request.method)} is not allowed here (allowed: {', '.join(methods)})",
                            methods)


def printable(text: str, limit: int = 200) -> str:
    """Text from a request, safe to echo: control characters escaped, length capped."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def control_character(path: str) -> Exception:
    """A path with a control character (%0A, %00, ...): no endpoint or name has one, so a 400 saying so."""
    from functions.errors import InvalidInput

    return InvalidInput(f"bad path: it contains a control character (e.g. %0A or %00), which no endpoint or name "
                        f"allows: {printable(path)}")


def cycle(ref: Any, replies: tuple[str, str], handle: Callable[..., Any], *args: Any) -> flask.Response:
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
        write_status(ref, False, failure_message(exc))
        return reply(failed, str(ref), {"config": str(ref), "error": exc.message, "errors": errors})
    if result is None:
        return empty()
    message, extra = result.status()
    write_status(ref, True, message, extra, result.degraded(), result.owns_degraded)
    return reply(completed, str(ref), result.event_data())


def failure_message(exc: Any, limit: int = 5) -> str:
    """One line: the error, then its first bad fields (`loc: msg`) and how many more."""
    fields = [f"{e.loc}: {e.msg}" if e.loc else e.msg for e in exc.errors]
    more = f"; and {len(fields) - limit} more" if len(fields) > limit else ""
    return f"{exc.message}" + (f" ({'; '.join(fields[:limit])}{more})" if fields else "")


def write_status(ref: Any, ok: bool, message: str, extra: dict[str, Any] | None = None,
                  rejected: str | None = None, owns_degraded: bool = True) -> None:
    """Best effort: the answer is the cycle's outcome; a status that cannot be written is logged only.
    `rejected`: the Degraded (RowsRejected) message of a cycle that kept rows out; `owns_degraded`:
    whether this cycle decides Degraded at all (an export followed by a scrape does not)."""
    from functions.clients import kube
    from functions.errors import FinopsError
    from functions.logs import get_logger

    try:
        kube.write_outcome(wiring.reader(), wiring.status_writer(), ref.kind, ref.namespace, ref.name, ok, message, extra, rejected,
                           owns_degraded)
    except FinopsError as exc:
        get_logger("main").warning("status not written", extra={"config": str(ref), "error": str(exc)})


def event(request: flask.Request) -> Any:
    from functions import events

    return events.from_http(dict(request.headers), request.get_data())


def ref(event: Any) -> Any:
    from functions.models.refs import ConfigRef

    return ConfigRef.from_event(event.subject, event.data)

