"""One table maps errors to HTTP answers with retry meaning.

Cases: every error class of functions.errors is in the table or answers as a listed ancestor, and no
error stores a status; InvalidInput -> 400 with every bad field; Unauthorized -> 401 + WWW-Authenticate (Basic, or
the Bearer challenge of the caller tokens); Conflict -> 409; TooLarge -> 413 naming the limit and its
setting; Unavailable -> 503 + Retry-After; an unexpected exception -> 500 JSON, never a crash, whose
body says nothing of the exception (only a correlation id) while the log has its traceback under it.
"""

from __future__ import annotations

import json
import logging

import pytest

from functions import errors
from functions.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    TooLarge,
    Unauthorized,
    Unavailable,
    answer,
)
from functions.logs import get_logger


def http_answer(exc: BaseException) -> tuple[dict[str, object], int, dict[str, str]]:
    got = answer(exc)
    return got.body, got.status, got.headers


def test_every_error_class_answers_from_the_table() -> None:
    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.FinopsError)]
    assert len(kinds) >= 12
    for kind in kinds:
        assert any(k in errors.ANSWERS for k in kind.__mro__), kind
        assert "status" not in kind.__init__.__code__.co_varnames, f"{kind.__name__} takes a status"
    assert sorted({r.status for r in errors.ANSWERS.values()}) == [400, 401, 403, 404, 405, 409, 413, 422, 500, 503, 504]


def test_a_bad_setting_is_a_deployment_error_naming_the_variable() -> None:
    from functions.settings.collection import CollectionSettings

    with pytest.raises(errors.Misconfigured) as caught:
        CollectionSettings.from_env({"FINOPS_UPLOAD_BATCH_ROWS": "-3", "FINOPS_KUBE": "mars"})
    body, status, _ = http_answer(caught.value)
    assert status == 500 and "settings are invalid" in body["error"]
    assert {e["loc"] for e in body["errors"]} == {"FINOPS_UPLOAD_BATCH_ROWS", "FINOPS_KUBE"}
    assert "Traceback" not in json.dumps(body) and "pydantic" not in json.dumps(body)


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
