"""Every target answers an error the same way: from the one table in functions.errors.

Each error class (and an unexpected exception) is raised at the first step after the gate of every
target, served by the real functions-framework app for that target (Flask's test client, no
network): the status, body and Retry-After / WWW-Authenticate headers equal `errors.answer` of the
same error, whichever target raised it. The deliberate exceptions are checked as such: an export or
scrape cycle whose input is bad answers 200 with its `…failed` CloudEvent (a 400 would dead-letter
a good tick), and an unexpected exception answers 500 with only a correlation id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from functions import errors, events, main
from functions.serving import wiring

SOURCE = str(Path(main.__file__))
ERRORS: list[Callable[[], BaseException]] = [
    lambda: errors.InvalidInput("bad", [errors.FieldError("a", "x")]),
    lambda: errors.Unprocessable("cannot", details={"exit_code": 3}),
    lambda: errors.Refused("SQLParseException[a statement of ours]"),  # not bad input: a cycle answers it 400
    lambda: errors.Unauthorized("who", 'Bearer realm="finops"'),
    lambda: errors.Forbidden("not there"),
    lambda: errors.NotFound("none"),
    lambda: errors.Conflict("twice"),
    lambda: errors.TooLarge(10, "FINOPS_MAX_BODY_BYTES"),
    lambda: errors.Misconfigured("settings", [errors.FieldError("FINOPS_X", "bad")]),
    lambda: errors.Unavailable("down", retry_after=7),
    lambda: errors.TimedOut("slow"),
    lambda: errors.FinopsError("ours"),
    lambda: RuntimeError("secret text /srv/state"),
]
CYCLES = {"exporter": "io.finops.export.failed", "scraper": "io.finops.scrape.failed"}
# target -> (module, attribute raised from, request)
RAISE_AT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "exporter": ("functions.stages.exporter", "handle", {"event": True}),
    "scraper": ("functions.stages.scraper", "handle", {"event": True}),
    "dbhandler": ("functions.stages.dbhandler.router", "_route", {"method": "POST", "path": "/upload"}),
    "aicost": ("functions.stages.aicost_ingest", "decode", {"event": True}),
    "aicost_metrics": ("functions.stages.aicost_ingest", "database", {"method": "GET", "path": "/metrics"}),
    "focus_ingest": ("functions.stages.focus_ingest", "handle", {"event": True}),
    "notebooks": ("functions.stages.notebooks", "handle", {"event": True}),
    "inference_runner": ("functions.stages.inference_runner", "handle", {"event": True}),
    "optimizer": ("functions.stages.optimizer.deps", "current", {"method": "GET", "path": "/optimize",
                                                                 "headers": {"Authorization": "Basic dTpw"}}),
}


@pytest.fixture(autouse=True)
def open_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FINOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("FINOPS_AUTH", "open")
    monkeypatch.setenv("FINOPS_DB_USERS", '{"finops": "s3cret"}')
    for cached in (wiring.settings, wiring.reader, wiring.status_writer, wiring.store, wiring.caller_gate):
        cached.cache_clear()
    yield
    for cached in (wiring.settings, wiring.reader, wiring.status_writer, wiring.store, wiring.caller_gate):
        cached.cache_clear()


def send(target: str, spec: dict[str, Any]) -> Any:
    client = create_app(target, SOURCE).test_client()
    if spec.get("event"):
        headers, body = events.to_binary(events.new(events.PING, "/test", {"kind": "ExporterScraperConfig",
                                                                          "namespace": "finops", "name": "demo"}))
        return client.post("/", headers=headers, data=body)
    return client.open(spec["path"], method=spec["method"], headers=spec.get("headers", {}))


@pytest.mark.parametrize("target", main.TARGETS)
def test_each_error_is_answered_from_the_table(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module, attribute, spec = RAISE_AT[target]
    seen: list[tuple[int, str]] = []
    for make in ERRORS:
        exc = make()

        def raiser(*_args: Any, _exc: BaseException = exc, **_kwargs: Any) -> Any:
            raise _exc

        monkeypatch.setattr(importlib.import_module(module), attribute, raiser)
        got = send(target, spec)
        expected = errors.answer(exc)
        if target in CYCLES and isinstance(exc, errors.InvalidInput):  # the deliberate exception: a failed cycle
            assert got.status_code == 200 and got.headers["ce-type"] == CYCLES[target], got.data
            continue
        assert got.status_code == expected.status, (target, type(exc).__name__, got.data)
        assert got.headers.get("Content-Type", "").startswith("application/json"), (target, got.headers)
        body = got.get_json()
        if isinstance(exc, errors.FinopsError):
            assert body == expected.body, (target, type(exc).__name__)
        else:
            assert set(body) == {"error", "correlation_id"} and "secret" not in got.get_data(as_text=True)
        for header in ("Retry-After", "WWW-Authenticate"):
            assert got.headers.get(header) == expected.headers.get(header), (target, type(exc).__name__, header)
        seen.append((got.status_code, type(exc).__name__))
    final = sum(isinstance(make(), errors.InvalidInput) for make in ERRORS)
    assert len(seen) == len(ERRORS) - (final if target in CYCLES else 0)
