"""The embedded engine's SQL listener (functions.storage.sql_listener) is bounded and answers JSON.

The database handler serves its own SQL and its notebooks' through these listeners, so they must stay
answering whatever a client (a notebook is untrusted code) sends. Real listeners on 127.0.0.1, raw
sockets and the crate client.

Cases:
- it binds loopback addresses only: 0.0.0.0, a LAN address and a host name are refused at start;
- no, wrong or non-Basic credentials: 401 on GET / and POST /_sql;
- a Content-Length over the limit: 413 naming the limit, answered before the body is sent;
- a gzip body that inflates over the limit: 413 (and `inflate` stops at the limit); a small one runs;
- chunked or length-less POSTs: 411; unknown paths: 404 JSON; unknown methods and garbage request
  lines: JSON, never the stdlib's HTML error page; a failing statement: CrateDB's error shape;
- max_connections: with every slot held, the next connection waits and is served as soon as a slot
  frees; when none frees within the timeout it gets a 503 JSON, not a hang; a silent connection is
  closed after the timeout, so it cannot hold a slot for ever;
- the crate client works through it (keep-alive, gzip of large bodies, `?types`);
- authenticated by default: without trust (FINOPS_AUTH other than `open`) a passwordless user and a
  listener without users are refused, as the handler's public port refuses them; with trust, CrateDB's
  rules; the users may come from FINOPS_DB_USERS_FILE, so no password sits in the environment.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crate import client

from functions.storage.engine import Engine
from functions.storage.sql_listener import BodyTooLarge, Limits, SqlListener, inflate

USERS = {"finops": "s3cret"}
AUTH = "Basic " + base64.b64encode(b"finops:s3cret").decode()


@pytest.fixture(name="listener")
def listener_fixture() -> Iterator[SqlListener]:
    engine = Engine()
    listener = SqlListener(engine, USERS, limits=Limits(max_connections=2, max_body_bytes=64 * 1024, timeout_s=1.5))
    try:
        yield listener
    finally:
        listener.close()
        engine.close()


def request(listener: SqlListener, raw: bytes, *, read_timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; (status, headers, body) of the answer."""
    with socket.create_connection((listener.host, listener.port), timeout=read_timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def post(path: str, body: bytes, *, auth: str | None = AUTH, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + (f"Authorization: {auth}\r\n" if auth else "") + extra + "\r\n").encode() + body


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "localhost", "::1"])
def test_it_binds_loopback_only(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SqlListener(Engine(), USERS, host=host)


@pytest.mark.parametrize("auth", [None, "Basic " + base64.b64encode(b"finops:wrong").decode(), "Bearer abc"])
def test_bad_credentials_are_401(listener: SqlListener, auth: str | None) -> None:
    status, headers, _ = request(listener, post("/_sql", b'{"stmt": "SELECT 1"}', auth=auth))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    status, _, _ = request(listener, b"GET / HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: {auth}\r\n".encode() if auth else b"") + b"\r\n")
    assert status == 401


def test_an_oversized_body_is_413_before_it_is_sent(listener: SqlListener) -> None:
    head = post("/_sql", b"", extra="").replace(b"Content-Length: 0", b"Content-Length: 10000000")
    status, headers, body = request(listener, head)  # the 10 MB never follow
    assert status == 413 and headers["connection"] == "close"
    assert "65536 bytes" in json.loads(body)["error"]["message"]


def test_a_gzip_bomb_is_413_and_inflate_stops_at_the_limit(listener: SqlListener) -> None:
    bomb = gzip.compress(b'{"stmt": "SELECT 1", "pad": "' + b"x" * 5_000_000 + b'"}')
    assert len(bomb) < 64 * 1024
    status, _, body = request(listener, post("/_sql", bomb, extra="Content-Encoding: gzip\r\n"))
    assert status == 413 and "decompressed" in json.loads(body)["error"]["message"]
    with pytest.raises(BodyTooLarge):
        inflate(bomb, "gzip", 1000)
    assert inflate(gzip.compress(b"abc" * 10), "GZIP", 30) == b"abc" * 10
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b"abc" * 10), "gzip", 29)
    assert inflate(b"plain", None, 5) == b"plain"
    small = gzip.compress(b'{"stmt": "SELECT 41 + 1 AS n"}')
    status, _, body = request(listener, post("/_sql", small, extra="Content-Encoding: gzip\r\n"))
    assert status == 200 and json.loads(body)["rows"] == [[42]]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"POST /_sql HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode() + b"\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411, id="chunked"),
        pytest.param(b"POST /_sql HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode() + b"\r\n\r\n", 411, id="no-length"),
        pytest.param(post("/admin", b"{}"), 404, id="unknown-path"),
        pytest.param(b"PUT /_sql HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501, id="unknown-method"),
        pytest.param(b"\x16\x03\x01 garbage\r\n\r\n", 400, id="garbage-request-line"),
        pytest.param(post("/_sql", b'{"stmt": "SELECT * FROM nowhere"}'), 404, id="sql-error"),
        pytest.param(post("/_sql", b"[1, 2"), 400, id="not-json"),
    ],
)
def test_refusals_are_json(listener: SqlListener, raw: bytes, status: int) -> None:
    got, headers, body = request(listener, raw)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]


def test_full_slots_make_the_next_connection_wait_until_one_frees(listener: SqlListener) -> None:
    silent = [socket.create_connection((listener.host, listener.port), timeout=10) for _ in range(2)]
    try:
        wait_for(lambda: listener.active_connections == 2)
        threading.Timer(0.5, silent[0].close).start()  # a slot frees in 0.5 s
        started = time.monotonic()
        status, _, body = request(listener, post("/_sql", b'{"stmt": "SELECT 1"}'))
        assert status == 200 and 0.4 < time.monotonic() - started < 1.4, body
    finally:
        for sock in silent:
            sock.close()


def test_slots_held_past_the_timeout_give_the_next_connection_a_503(listener: SqlListener) -> None:
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:  # a byte now and then: never silent long enough to be closed
        for byte in b"POST /_sql HTTP/1.1\r\nHost: x":
            if stop.wait(0.3):
                return
            sock.sendall(bytes([byte]))

    slow = [socket.create_connection((listener.host, listener.port), timeout=10) for _ in range(2)]
    threads = [threading.Thread(target=trickle, args=(sock,), daemon=True) for sock in slow]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: listener.active_connections == 2)
        started = time.monotonic()
        status, headers, body = request(listener, post("/_sql", b'{"stmt": "SELECT 1"}'))
        assert status == 503 and headers["retry-after"] == "1", body
        assert "maximum number of connections" in json.loads(body)["error"]["message"]
        assert 1.2 < time.monotonic() - started < 4
    finally:
        stop.set()
        for sock in slow:
            sock.close()


def test_a_silent_connection_is_closed_after_the_timeout(listener: SqlListener) -> None:
    with socket.create_connection((listener.host, listener.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert 1.2 < time.monotonic() - started < 4
    wait_for(lambda: listener.active_connections == 0)


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_the_crate_client_works_through_it(listener: SqlListener) -> None:
    conn = client.connect(listener.url, username="finops", password="s3cret")
    try:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE t (id INTEGER, note TEXT)")
        cursor.executemany("INSERT INTO t (id, note) VALUES (?, ?)", [[i, "n" * 100] for i in range(200)])  # > 8 KiB: gzipped
        for _ in range(20):  # the same keep-alive connection, one slot
            cursor.execute("SELECT count(*), max(id) FROM t")
        assert cursor.fetchone() == [200, 199]
    finally:
        conn.close()


def _post_select(listener: SqlListener, user: str, password: str) -> int:
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    body = b'{"stmt": "SELECT 1"}'
    raw = (f"POST /_sql HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    return request(listener, raw)[0]


@pytest.mark.parametrize("users", [{"crate": "", "finops": "s3cret"}, {}], ids=["passwordless-user", "no-users"])
def test_without_trust_passwordless_users_and_no_users_are_refused(users: dict[str, str]) -> None:
    engine = Engine()
    closed = SqlListener(engine, users, trust=False)
    trusting = SqlListener(engine, users, trust=True)
    try:
        assert _post_select(closed, "crate", "") == 401
        assert _post_select(trusting, "crate", "") == 200
        if users:
            assert _post_select(closed, "finops", "s3cret") == 200
    finally:
        closed.close()
        trusting.close()
        engine.close()


def test_the_users_can_come_from_a_file_instead_of_the_environment(tmp_path: Path) -> None:
    from functions.errors import Misconfigured
    from functions.settings.database import DbHandlerSettings

    users = tmp_path / "users.json"
    users.write_text(json.dumps({"finops": "from-the-file"}))
    got = DbHandlerSettings.from_env({"FINOPS_DB_USERS_FILE": str(users), "FINOPS_DB_USERS": '{"env": "ignored"}'})
    assert got.users == {"finops": "from-the-file"}
    with pytest.raises(Misconfigured) as missing:
        DbHandlerSettings.from_env({"FINOPS_DB_USERS_FILE": str(tmp_path / "absent.json")})
    assert missing.value.errors[0].loc == "FINOPS_DB_USERS_FILE"


def test_the_handlers_engine_takes_its_statement_time_limit_from_the_settings(tmp_path: Path) -> None:
    from functions.settings.database import DbHandlerSettings
    from functions.stages.dbhandler import router
    from functions.storage.dialect import SqlError

    settings = DbHandlerSettings.from_env({"FINOPS_DB_PATH": str(tmp_path / "db" / "finops.duckdb"),
                                           "FINOPS_DB_STATEMENT_TIMEOUT": "0.5"})
    engine = router.engine(settings)
    try:
        started = time.monotonic()
        with pytest.raises(SqlError) as cancelled:
            engine.execute("SELECT count(*) FROM range(10000000000000)")
        assert "statement time limit of 0.5 s" in cancelled.value.message
        assert time.monotonic() - started < 10
        assert engine.execute("SELECT 1").rows == [[1]]  # the engine keeps answering
    finally:
        engine.close()
