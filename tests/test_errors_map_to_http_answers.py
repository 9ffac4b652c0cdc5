"""One table maps errors to HTTP answers with retry meaning.

Cases: InvalidInput -> 400 with every bad field; Unauthorized -> 401 + WWW-Authenticate;
Conflict -> 409; Unavailable -> 503 + Retry-After; an unexpected exception -> 500 JSON, never a crash.
"""

from __future__ import annotations

from functions.errors import Conflict, FieldError, InvalidInput, Unauthorized, Unavailable, http_answer


def test_invalid_input_lists_every_bad_field() -> None:
    body, status, _ = http_answer(InvalidInput("bad", [FieldError("a", "x"), FieldError("b", "y")]))
    assert status == 400
    assert body == {"error": "bad", "errors": [{"loc": "a", "msg": "x"}, {"loc": "b", "msg": "y"}]}


def test_retry_meaning_of_each_error() -> None:
    assert http_answer(Unauthorized())[1:] == (401, {"WWW-Authenticate": 'Basic realm="finops"'})
    assert http_answer(Conflict("c"))[1] == 409
    assert http_answer(Unavailable("down", retry_after=7))[1:] == (503, {"Retry-After": "7"})


def test_unexpected_exceptions_become_500_json() -> None:
    body, status, _ = http_answer(ZeroDivisionError("boom"))
    assert status == 500 and "ZeroDivisionError" in body["error"]
