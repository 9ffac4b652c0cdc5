"""The project's exception tree and the one mapping from an exception to an HTTP answer.

Errors carry retry meaning (Knative retries 5xx and 404, never other 4xx):
InvalidInput -> 400/422 (final), Unauthorized -> 401, Conflict -> 409, TooLarge -> 413 (final),
Unavailable -> 503 + Retry-After. No httpx, crate or duckdb exception may escape functions/clients or
functions/storage: they are chained into these. An unexpected exception answers a generic 500 whose
body carries only a correlation id; its traceback is logged under that id (never sent: exception text
can hold paths, SQL or credentials).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One bad field: where (a dotted path or row index), and why."""

    loc: str
    msg: str

    def to_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


@dataclass
class FinopsError(Exception):
    """Base of every error this project raises on purpose."""

    message: str
    status: int = 500
    errors: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out

    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(FinopsError):
    """The request as a whole is malformed: final, never retried."""

    def __init__(self, message: str, errors: list[FieldError] | None = None, status: int = 400) -> None:
        super().__init__(message, status, list(errors or []))


class Unauthorized(FinopsError):
    """No or wrong credentials. `challenge`: the WWW-Authenticate value (Basic for database users,
    Bearer for the functions' caller tokens)."""

    def __init__(self, message: str = "authentication required", challenge: str = 'Basic realm="finops"') -> None:
        super().__init__(message, 401)
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class NotFound(FinopsError):
    """Only for reads of a named object (e.g. a notebook's info); never for 'nothing to do'."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class Conflict(FinopsError):
    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message, 409, list(errors or []))


class TooLarge(FinopsError):
    """A request body over this function's limit: refused before it is read (final: a retry is as big)."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"request body too large: this function accepts at most {limit} bytes ({setting})", 413,
                         [FieldError("body", f"limit {limit} bytes; set {setting} to change it")])
        self.limit = limit


class Unavailable(FinopsError):
    """Temporary trouble (a dependency down or slow): retried by Knative after Retry-After."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, 503)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def field_errors(exc: Any, default_loc: str = "") -> list[FieldError]:
    """Every error of a pydantic ValidationError as FieldErrors (dotted locations), none dropped."""
    return [FieldError(".".join(str(p) for p in e["loc"]) or default_loc, str(e["msg"])) for e in exc.errors()]


def http_answer(exc: BaseException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Map any exception to (JSON body, status, headers). Unknown exceptions are 500, never a crash:
    the body says only "internal error" and a correlation id, and the traceback is logged here under
    that id (so every caller's answer can be found in the logs, whoever logs it again)."""
    if isinstance(exc, FinopsError):
        return exc.body(), exc.status, exc.headers()
    correlation_id = uuid.uuid4().hex
    from functions.logs import get_logger

    get_logger("errors").error("internal error", exc_info=(type(exc), exc, exc.__traceback__),
                               extra={"correlation_id": correlation_id, "exception": type(exc).__name__})
    return {"error": "internal error (the logs have its traceback under this correlation id)",
            "correlation_id": correlation_id}, 500, {}
