"""One table maps errors to HTTP answers with retry meaning.

Cases: InvalidInput -> 400 with every bad field; Unauthorized -> 401 + WWW-Authenticate (Basic, or
the Bearer challenge of the caller tokens); Conflict -> 409; TooLarge -> 413 naming the limit and its
setting; Unavailable -> 503 + Retry-After; an unexpected exception -> 500 JSON, never a crash, whose
body says nothing of the exception (only a correlation id) while the log has its traceback under it.
"""

from __future__ import annotations

import json
import logging

import pytest

from functions.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    TooLarge,
    Unauthorized,
    Unavailable,
    http_answer,
)
from functions.logs import get_logger


def test_invalid_input_lists_every_bad_field() -> None:
    body, status, _ = http_answer(InvalidInput("bad", [FieldError("a", "x"), FieldError("b", "y")]))
    assert status == 400
    assert body == {"error": "bad", "errors": [{"loc": "a", "msg": "x"}, {"loc": "b", "msg": "y"}]}


def test_retry_meaning_of_each_error() -> None:
    assert http_answer(Unauthorized())[1:] == (401, {"WWW-Authenticate": 'Basic realm="finops"'})
    assert http_answer(Unauthorized("no token", 'Bearer realm="finops"'))[1:] == (401, {"WWW-Authenticate": 'Bearer realm="finops"'})
    assert http_answer(Conflict("c"))[1] == 409
    body, status, _ = http_answer(TooLarge(1024, "FINOPS_MAX_BODY_BYTES"))
    assert status == 413 and "1024 bytes" in body["error"] and "FINOPS_MAX_BODY_BYTES" in body["error"]
    assert http_answer(Unavailable("down", retry_after=7))[1:] == (503, {"Retry-After": "7"})


def test_unexpected_exceptions_become_500_json_without_their_text(caplog: pytest.LogCaptureFixture) -> None:
    secret = "password=hunter2 at /srv/state/db/finops.duckdb"
    get_logger("errors")  # configured first (it turns propagation off), then opened to caplog
    logging.getLogger("finops").propagate = True  # JSON lines on stderr normally; caplog listens at the root
    try:
        with caplog.at_level(logging.ERROR, logger="finops"):
            body, status, _ = http_answer(ZeroDivisionError(secret))
    finally:
        logging.getLogger("finops").propagate = False
    assert status == 500
    assert secret not in json.dumps(body) and "ZeroDivisionError" not in json.dumps(body)
    assert body["error"].startswith("internal error") and len(body["correlation_id"]) == 32
    logged = [r for r in caplog.records if getattr(r, "correlation_id", None) == body["correlation_id"]]
    assert logged and all(r.exc_info is not None and r.exc_info[0] is ZeroDivisionError for r in logged)
