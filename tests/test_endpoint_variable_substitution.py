"""`<var>` tokens resolve as Krateo resolves them (krateoplatformops/finops-prometheus-exporter), except that nothing loops for ever.

Cases:
- a lower/mixed-case value is used as is; an all-uppercase value names an environment variable;
  `8080` (digits are "uppercase") is looked up in the environment and so becomes "";
- a missing variable becomes "" and logs a warning; an empty value stays "";
- every occurrence is replaced; a value bringing a new token is resolved in a later pass;
- a self-referencing value and a reference cycle terminate, leaving the token;
- `<...>` spanning a newline is not a token;
- fetch substitutes in the path and the server-url, never in headers or payload.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from loopback_http import Reply, serve

from functions.clients.endpoint import Endpoint, RetryPolicy, fetch, substitute
from functions.models.crs import API

ENV = {"MY_SVC_SERVICE_HOST": "10.0.0.7", "SUB_ID": "sub-123", "MY_VAR_2": "two"}


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("/subs/<sub>/costs", {"sub": "abc-123"}, "/subs/abc-123/costs"),
        ("/<x>", {"x": "Mixed"}, "/Mixed"),
        ("http://<host>:8080", {"host": "MY_SVC_SERVICE_HOST"}, "http://10.0.0.7:8080"),
        ("/subs/<sub>", {"sub": "SUB_ID"}, "/subs/sub-123"),
        ("/<v>", {"v": "MY_VAR_2"}, "/two"),
        ("http://h:<port>/", {"port": "8080"}, "http://h:/"),
        ("/<missing>/x", {}, "//x"),
        ("/<empty>/x", {"empty": ""}, "//x"),
        ("/<a>/<a>?q=<a>", {"a": "v"}, "/v/v?q=v"),
        ("/<a>/<b>", {"a": "one", "b": "two"}, "/one/two"),
        ("/<outer>", {"outer": "x-<inner>", "inner": "y"}, "/x-y"),
        ("/<host>", {"host": "<host>.example"}, "/<host>.example"),
        ("/<a>", {"a": "<b>", "b": "<a>"}, "/<a>"),
        ("/<a\nb>", {"a\nb": "no"}, "/<a\nb>"),
        ("/no/tokens", {"x": "y"}, "/no/tokens"),
    ],
    ids=[
        "lowercase-value", "mixed-case-value", "uppercase-is-env", "env-with-underscore", "env-with-digit",
        "digits-are-env-so-empty", "missing-is-empty", "empty-value", "every-occurrence", "two-tokens",
        "value-with-token-resolved", "self-reference-terminates", "cycle-terminates", "newline-not-a-token",
        "no-tokens",
    ],
)
def test_substitute(text: str, variables: dict[str, str], expected: str) -> None:
    assert substitute(text, variables, ENV) == expected


def test_digits_really_come_from_the_environment() -> None:
    assert substitute("<port>", {"port": "8080"}, {"8080": "odd but Krateo does it"}) == "odd but Krateo does it"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    logger = logging.getLogger("finops.clients.endpoint")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def test_missing_variable_logs_a_warning(warnings_logged: list[logging.LogRecord]) -> None:
    assert substitute("/<nope>", {}, {}) == "/"
    assert [(r.levelname, r.variable) for r in warnings_logged] == [("WARNING", "nope")]  # type: ignore[attr-defined]


def test_fetch_substitutes_path_and_server_url_only() -> None:
    with serve(Reply(200, b"ok")) as srv:
        port = str(srv.port)
        ep = Endpoint(server_url="http://<ip>:<port>/")
        api = API(path="/subs/<sub>/q?x=<sub>", verb="POST", payload='{"s": "<sub>"}', headers=["X-Sub: <sub>"])
        variables = {"ip": "LOOPBACK", "port": "SRV_PORT", "sub": "abc"}
        dest = io.BytesIO()
        result = fetch(api, ep, variables, dest=dest, retry=RetryPolicy(max_retries=0),
                       environ={"LOOPBACK": "127.0.0.1", "SRV_PORT": port})
    seen = srv.seen[0]
    assert result.url == f"http://127.0.0.1:{port}/subs/abc/q?x=abc"
    assert seen.path == "/subs/abc/q?x=abc"
    assert seen.body == b'{"s": "<sub>"}' and seen.headers["x-sub"] == "<sub>"
