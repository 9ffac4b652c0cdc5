"""The gate every request passes before its target runs, in this order, on headers only: the method
(405), the probes `GET /` and `/healthz` (always open: they reveal nothing), the caller
(functions.clients.callers: 401 + `WWW-Authenticate: Bearer`), then the body size (413 naming the
limit and FINOPS_MAX_BODY_BYTES; the limit is also set on the request, so a chunked body is cut off
while it is read). Only then is the body read. A refusal is a streamed JSON response, because
functions-framework reads the whole request body after every non-streamed response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from functions.serving import answers, wiring

if TYPE_CHECKING:
    import flask

PROBES = ("", "/healthz")
EVENT_METHODS = ("GET", "HEAD", "POST")


def serve(request: flask.Request, target: str, run: Callable[[], flask.Response], *,
           methods: tuple[str, ...] | None = EVENT_METHODS, get: bool = False,
           check: Callable[[Any], None] | None = None) -> flask.Response:
    """One request through the gate (module doc), then `run`; every exception becomes a JSON answer.

    `methods`: those allowed (None: the handler answers every method itself); `get`: GET paths other
    than the probes are endpoints of this target (else 404); `check`: replaces the caller check.
    """
    from functions.errors import TooLarge

    try:
        gate = wiring.caller_gate()
        limit = gate.settings.body_limit(target)
        # Set before anything touches the body. One byte over the limit: werkzeug silently stops a
        # chunked body AT its limit, so the extra byte is how an oversized one is told from a full one.
        request.max_content_length = limit + 1
        if methods is not None and request.method not in methods:
            raise answers.method_not_allowed(request, methods)
        if any(not c.isprintable() for c in request.path):
            raise answers.control_character(request.path)
        probe = request.method in ("GET", "HEAD") and request.path.rstrip("/") in PROBES
        if probe and target == "dbhandler":
            return run()  # its GET / is CrateDB's banner (the crate client reads it), open like a probe
        if probe:
            return answers.health(target)
        if check is not None:
            check(gate)
        else:
            if request.method in ("GET", "HEAD") and not get:
                raise answers.no_such_path(request, "POST / (a CloudEvent)")
            gate.check(request.headers.get("Authorization"))
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(limit, "FINOPS_MAX_BODY_BYTES")
        if request.content_length is None and len(request.get_data()) > limit:  # chunked: read (cached), bounded
            raise TooLarge(limit, "FINOPS_MAX_BODY_BYTES")
        return run()
    except Exception as exc:  # noqa: BLE001 - every exception is answered through the error table
        return answers.error_response(exc)


def over_tls(request: flask.Request) -> bool:
    """Whether THIS connection is TLS (the webhook Deployment's gunicorn terminates it), read from the
    socket itself: `request.is_secure` also believes X-Forwarded-Proto/-Ssl, which gunicorn trusts from
    127.0.0.1, where every request comes from behind Knative's queue-proxy or on the local stack."""
    import ssl

    return isinstance(request.environ.get("gunicorn.socket"), ssl.SSLSocket)

