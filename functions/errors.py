"""The project's exception tree and the one table that turns an exception into an HTTP answer.

An error's class says what it means and whether a retry can help; nothing stores a status number.
`ANSWERS` maps each class to its status (Knative's broker redelivers 404, 409, 429 and 5xx, never
other 4xx, so the class decides whether an event is retried or final) and `answer()` builds the
status, JSON body and headers from it: every function, the database handler's routes and Flask's
own errors go through it. No httpx, crate or duckdb exception may escape functions/clients or
functions/storage: they are chained into these. An unexpected exception answers a generic 500 whose
body carries only a correlation id; its traceback is logged under that id (never sent: exception
text can hold paths, SQL or credentials).

Deliberate exceptions to the table, each named where it happens: an export or scrape cycle whose
input is bad answers 200 with an `…failed` event (a 400 would dead-letter a tick that was fine);
an admission review answers "allowed" whatever failed (the webhook is fail-open); CrateDB's `/_sql`
protocol keeps CrateDB's body shape (`{"error": {"message", "code"}}`) with the status of this table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    """One bad field: where (a dotted path or row index), and why."""

    loc: str
    msg: str

    def to_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


class FinopsError(Exception):
    """Base of every error this project raises on purpose; as such, trouble on our side (500).

    `errors`: every bad field; `details`: extra members of the JSON body (Krateo's shapes need some,
    e.g. a notebook's `exit_code` and `stderr`)."""

    def __init__(self, message: str, errors: list[FieldError] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors or [])
        self.details = dict(details or {})

    def __str__(self) -> str:
        return self.message

    @property
    def status(self) -> int:
        """The HTTP status this error answers with: read from the table, never stored."""
        return rule(self).status

    def answer_as(self) -> FinopsError:
        """The error whose class decides the answer (a wrapper answers as what it wraps)."""
        return self

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out | self.details


class InvalidInput(FinopsError):
    """The request as a whole is malformed: final, never retried."""


class Refused(FinopsError):
    """A statement a database refused as wrong (syntax, an unknown column): final like bad input, but
    our code's or a notebook's statement, not the request's own input, so never caught as InvalidInput
    (an export cycle must not turn it into a `failed` event that blames the data)."""


class Unprocessable(InvalidInput):
    """Well-formed but cannot be done as asked (a notebook that fails, a batch whose every event
    conflicts with a stored one): final."""


class Unauthorized(FinopsError):
    """No or wrong credentials. `challenge`: the WWW-Authenticate value (Basic for database users,
    Bearer for the functions' caller tokens)."""

    def __init__(self, message: str = "authentication required", challenge: str = 'Basic realm="finops"') -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(InvalidInput):
    """Authenticated or not, this is not allowed (an outbound URL outside the allow-list): final."""


class NotFound(FinopsError):
    """Only for reads of a named object (e.g. a notebook's info) or an unknown endpoint; never for
    'nothing to do'."""


class MethodNotAllowed(InvalidInput):
    """The path exists, the method does not. `allow`: the methods it takes (the Allow header)."""

    def __init__(self, message: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(FinopsError):
    """The request contradicts what is stored (a duplicate key)."""


class TooLarge(InvalidInput):
    """A request body over this function's limit: refused before it is read (final: a retry is as big)."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"request body too large: this function accepts at most {limit} bytes ({setting})",
                         [FieldError("body", f"limit {limit} bytes; set {setting} to change it")])
        self.limit = limit


class Misconfigured(FinopsError):
    """A bad setting: a deployment error, not the request's fault. Answered 500 by every function (so
    events are redelivered until the deployment is fixed), naming each variable and what is wrong."""

    @classmethod
    def from_validation(cls, model: str, exc: ValidationError, aliases: dict[str, str]) -> Misconfigured:
        """A settings model's ValidationError, each field named by its environment variable."""
        errors = []
        for e in exc.errors():
            first = str(e["loc"][0]) if e["loc"] else ""
            errors.append(FieldError(aliases.get(first, first) or model, str(e["msg"])))
        return cls(f"this function's settings are invalid ({model}): fix the deployment's environment", errors)


class Unavailable(FinopsError):
    """Temporary trouble (a dependency down or slow): retried by Knative after Retry-After."""

    def __init__(self, message: str, retry_after: int = 5, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class TimedOut(FinopsError):
    """The work ran past its time limit and was stopped (a notebook run): retried like any 5xx."""


@dataclass(frozen=True)
class Rule:
    """How one class of error is answered."""

    status: int
    meaning: str


ANSWERS: dict[type[FinopsError], Rule] = {
    InvalidInput: Rule(400, "bad input: final, never retried"),
    Refused: Rule(400, "a statement the database refused: final, never retried"),
    Unauthorized: Rule(401, "no or wrong credentials (WWW-Authenticate names the scheme)"),
    Forbidden: Rule(403, "not allowed here (an outbound URL outside the allow-list)"),
    NotFound: Rule(404, "no such named object or endpoint"),
    MethodNotAllowed: Rule(405, "method not served on this path (Allow names those that are)"),
    Conflict: Rule(409, "contradicts what is stored"),
    TooLarge: Rule(413, "request body over the limit, refused before it is read"),
    Unprocessable: Rule(422, "well-formed but cannot be done as asked: final"),
    FinopsError: Rule(500, "trouble on our side: retried"),
    Misconfigured: Rule(500, "a deployment error (a bad setting): retried until the deployment is fixed"),
    Unavailable: Rule(503, "a dependency down or busy: retried after Retry-After"),
    TimedOut: Rule(504, "stopped at its time limit: retried"),
}
"""The one mapping from an error's class to its answer; a class answers as its nearest listed ancestor."""


def rule(exc: FinopsError) -> Rule:
    """The table's rule for this error (its own class or the nearest listed ancestor)."""
    for kind in type(exc.answer_as()).__mro__:
        found = ANSWERS.get(kind)
        if found is not None:
            return found
    return ANSWERS[FinopsError]


@dataclass
class Answer:
    """An HTTP answer: status, JSON body, headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def answer(exc: BaseException) -> Answer:
    """Map any exception to its answer. Unknown exceptions are 500, never a crash: the body says only
    "internal error" and a correlation id, and the traceback is logged here under that id (so every
    caller's answer can be found in the logs, whoever logs it again)."""
    if isinstance(exc, FinopsError):
        decides = exc.answer_as()
        return Answer(rule(exc).status, exc.body(), _headers(decides))
    correlation_id = uuid.uuid4().hex
    from functions.logs import get_logger

    get_logger("errors").error("internal error", exc_info=(type(exc), exc, exc.__traceback__),
                               extra={"correlation_id": correlation_id, "exception": type(exc).__name__})
    return Answer(500, {"error": "internal error (the logs have its traceback under this correlation id)",
                        "correlation_id": correlation_id})


def answered(exc: BaseException, logger: str, **context: Any) -> Answer:
    """`answer`, logged the one way every entry point logs: refusals (4xx) as warnings with their body,
    failures of ours (5xx) as errors with their body and traceback."""
    from functions.logs import get_logger

    got = answer(exc)
    log = get_logger(logger)
    # the error and its fields only: `details` can carry a notebook's stderr, which is the caller's, not the log's
    said: dict[str, Any] = {k: got.body[k] for k in ("error", "errors") if k in got.body}
    if isinstance(exc, FinopsError) and got.status < 500:
        log.warning("request refused", extra={"status": got.status, **context, **said})
    elif isinstance(exc, FinopsError):
        log.error("request failed", exc_info=(type(exc), exc, exc.__traceback__),
                  extra={"status": got.status, **context, **said})
    else:
        log.error("request failed", extra={"status": got.status, **context, **said})  # traceback: under its id
    return got


def _headers(exc: FinopsError) -> dict[str, str]:
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": exc.challenge}
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        return {"Allow": ", ".join(exc.allow)}
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def field_errors(exc: Any, default_loc: str = "") -> list[FieldError]:
    """Every error of a pydantic ValidationError as FieldErrors (dotted locations), none dropped."""
    return [FieldError(".".join(str(p) for p in e["loc"]) or default_loc, str(e["msg"])) for e in exc.errors()]
