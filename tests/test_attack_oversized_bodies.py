"""Oversized bodies are refused before they are read, and every HTTP-level error is a JSON answer.

Set-up (module): every target of functions/main.py TARGETS under functions-framework on 127.0.0.1 with
its default body limit, callers holding the shared token (tests/dbhandler_server.py), the database
handler as main.py serves it.

Cases:
- a request head announcing one byte more than the target's limit (its default,
  functions.settings.callers.BODY_LIMITS) is answered 413 at once, the body never sent: JSON naming the limit and
  FINOPS_MAX_BODY_BYTES; the database handler too (for a database user);
- a chunked body (no Content-Length) over the limit is cut off while it is read: 413; one exactly at
  the limit is read whole (FINOPS_MAX_BODY_BYTES set small, so the test sends kilobytes);
- the setting's default per target is what docs/settings.md documents, and sized above what callers
  send (an /upload part of 50,000 FOCUS rows, an aicost batch of FINOPS_AICOST_MAX_BATCH events);
- Flask's own errors are JSON, never HTML: functions-framework's /robots.txt (404), a path with %0A
  (the issue's notebook name: 400 naming the control character), a method a target does not serve
  (405 + Allow), an unknown GET path (404);
- a bad setting (a deployment error) answers 500 naming the variable, never its value or a traceback
  (an unexpected exception's correlation-id answer is checked for every target in
  test_every_target_answers_errors_from_one_table).
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbhandler_server import AUTH, USERS, start_function, stop_process

from functions.local.supervisor import free_port
from functions.main import TARGETS
from functions.settings.callers import BODY_LIMITS

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "functions" / "main.py"
BASIC = {"Authorization": "Basic " + base64.b64encode(b"finops:" + USERS["finops"].encode()).decode()}
SMALL = 64 << 10


def _start(targets: dict[str, int], env: dict[str, str], tmp: Path) -> list[Any]:
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [pool.submit(start_function, t, p, env, tmp / f"{t}-{p}.log", MAIN) for t, p in targets.items()]
    procs = [f.result() for f in futures if f.exception() is None]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        for proc in procs:
            stop_process(proc)
        raise AssertionError(errors)
    return procs


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("oversized")
    ports = {t: free_port() for t in TARGETS} | {"small-aicost": free_port(), "small-dbhandler": free_port()}
    env = {"FINOPS_STATE_DIR": str(tmp / "state"), "FINOPS_KUBE": "local", "FINOPS_DB_MODE": "embedded",
           "FINOPS_DB_PATH": str(tmp / "db" / "finops.duckdb"), "FINOPS_DB_USERS": json.dumps(USERS)}
    procs = _start({t: ports[t] for t in TARGETS}, env, tmp)
    try:
        small = {**env, "FINOPS_MAX_BODY_BYTES": str(SMALL), "FINOPS_DB_PATH": str(tmp / "db2" / "finops.duckdb")}
        procs += _start({"aicost": ports["small-aicost"], "dbhandler": ports["small-dbhandler"]}, small, tmp)
        yield {t: f"http://127.0.0.1:{p}" for t, p in ports.items()}
    finally:
        for proc in procs:
            stop_process(proc)


def _exchange(url: str, request: bytes, timeout: float = 10) -> tuple[float, int, dict[str, str], Any]:
    """Send raw bytes, read one answer: (seconds, status, headers, JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536) or b"\r\n\r\n"
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return time.monotonic() - began, int(lines[0].split()[1]), headers, json.loads(body) if body else None


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode()


@pytest.mark.parametrize("target", TARGETS)
def test_one_byte_over_the_limit_is_refused_before_the_body(urls: dict[str, str], target: str) -> None:
    limit = BODY_LIMITS[target]
    method, path, auth = "POST", "/", AUTH
    if target == "aicost_metrics":
        method, path = "GET", "/metrics"
    if target == "dbhandler":
        path, auth = "/upload?table=t&run=r", BASIC
    request = _head(method, path, {**auth, "Content-Type": "application/json", "Content-Length": str(limit + 1)})
    seconds, status, headers, body = _exchange(urls[target], request)  # no body follows the head
    assert status == 413, body
    assert headers["content-type"].startswith("application/json")
    assert f"at most {limit} bytes" in body["error"] and "FINOPS_MAX_BODY_BYTES" in body["error"]
    assert seconds < 5  # answered without waiting for the announced body


def _chunked(url: str, path: str, headers: dict[str, str], size: int) -> tuple[int, Any]:
    """POST `size` bytes with Transfer-Encoding: chunked (no Content-Length), 8 KiB per chunk."""
    def chunks() -> Iterator[bytes]:
        left = size
        while left:
            n = min(8192, left)
            yield b" " * n
            left -= n

    answer = httpx.post(url + path, content=chunks(), headers={**headers, "Content-Type": "application/json"}, timeout=30)
    return answer.status_code, answer.json()


@pytest.mark.parametrize(("target", "path", "auth"), [("small-aicost", "/", AUTH),
                                                       ("small-dbhandler", "/upload?table=t&run=r", BASIC)])
def test_a_chunked_body_is_cut_off_at_the_limit(urls: dict[str, str], target: str, path: str, auth: dict[str, str]) -> None:
    status, body = _chunked(urls[target], path, auth, SMALL + 1)
    assert status == 413 and f"at most {SMALL} bytes" in body["error"], body
    status, body = _chunked(urls[target], path, auth, SMALL)  # whitespace: read whole, then refused as no JSON
    assert status == 400, body


def test_the_defaults_leave_room_for_what_callers_send() -> None:
    settings = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    row = next(line for line in settings.splitlines() if "`FINOPS_MAX_BODY_BYTES`" in line)
    for target, limit in BODY_LIMITS.items():
        shown = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
        assert f"{target} {shown}" in row, (target, row)
    assert set(BODY_LIMITS) == set(TARGETS)
    # measured (see functions/clients/callers.py): 13 MB per 50,000-row Arrow part, 37 MB per 20,000 JSON
    # records, 8 MB per 20,000 AI cost events; every limit at least 3x above
    assert BODY_LIMITS["dbhandler"] >= 3 * 37_000_000 and BODY_LIMITS["aicost"] >= 3 * 8_200_000


@pytest.mark.parametrize(("target", "method", "path", "status"), [
    ("exporter", "GET", "/robots.txt", 404),
    ("dbhandler", "GET", "/compute/monthly%0Areport/info", 400),
    ("notebooks", "POST", "/x%00y", 400),
    ("aicost", "PUT", "/", 405),
    ("aicost_metrics", "GET", "/not-metrics", 404),
    ("scraper", "GET", "/metrics", 404),
], ids=["robots.txt", "%0A in a notebook name", "%00", "PUT", "unknown path", "GET on an event target"])
def test_http_errors_are_json(urls: dict[str, str], target: str, method: str, path: str, status: int) -> None:
    headers = BASIC if target == "dbhandler" else AUTH
    answer = httpx.request(method, urls[target] + path, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    assert "<html" not in answer.text.lower() and answer.json()["error"]
    if status == 405:
        assert answer.headers["Allow"] == "GET, HEAD, POST"
    if "%0A" in path or "%00" in path:
        assert "control character" in answer.json()["error"]


def test_a_bad_setting_answers_500_naming_the_variable_not_its_value(tmp_path: Path) -> None:
    leak = "s3cret-value-/srv/finops/state"  # a bad setting: pydantic's error text could repeat the value
    port = free_port()
    log = tmp_path / "exporter.log"
    env = {"FINOPS_STATE_DIR": str(tmp_path), "FINOPS_KUBE": "local", "FINOPS_SNAPSHOT_STORE": leak}
    proc = start_function("exporter", port, env, log, MAIN)
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics/finops/x", headers=AUTH, timeout=30)
    finally:
        stop_process(proc)
    assert answer.status_code == 500, answer.text  # a deployment error: redelivered until it is fixed
    body = answer.json()
    assert "settings are invalid" in body["error"] and [e["loc"] for e in body["errors"]] == ["FINOPS_SNAPSHOT_STORE"]
    assert leak not in answer.text and "ValidationError" not in answer.text and "Traceback" not in answer.text
    assert "request failed" in log.read_text() and "FINOPS_SNAPSHOT_STORE" in log.read_text()
