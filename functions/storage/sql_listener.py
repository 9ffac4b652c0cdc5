"""CrateDB's HTTP protocol (`GET /`, `POST /_sql`) over an Engine on loopback, with its own worker threads.

Why it exists: in embedded mode the database handler's own SQL (uploads, findings, the ledger,
notebook runs) goes through the `crate` client over HTTP like every other client's. Sent to the
handler's public port, each statement waited for a worker thread of the very pool its caller was
holding: 10 concurrent uploads took all of functions-framework's threads and every one of them then
waited for the 60 s client timeout. A listener serves the same functions.storage.sqlapi over the
same Engine from threads of its own, so no request ever waits on the pool it holds.

Limits, so that it stays answering: it binds a loopback address only (anything else is refused at
start); at most `max_connections` connections are served at once, one thread each (more wait in the
accept backlog up to `timeout_s`, then get a 503); a body larger than `max_body_bytes`, before or
after gzip decompression, is refused with 413 before it is read or inflated; a connection silent
for `timeout_s` is closed; only `GET /` and `POST /_sql` exist, and every request carries Basic
credentials of the engine's users. Answers are CrateDB-shaped JSON (`{"error": {"message", "code"}}`),
never HTML and never internal exception text.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from functions.errors import Unauthorized
from functions.logs import get_logger
from functions.storage import sqlapi
from functions.storage.engine import Engine

log = get_logger("storage.sql_listener")

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much one listener serves at once, and how long it waits."""

    max_connections: int = 64
    """Connections served at once (one thread each); more wait in the backlog."""
    max_body_bytes: int = 256 * _MIB
    """Largest request body, also after gzip decompression (the crate client gzips bodies >= 8 KiB)."""
    timeout_s: float = 60.0
    """A connection silent this long is closed; a connection waits this long for a free slot."""


class BodyTooLarge(ValueError):
    """A body (or its decompressed form) is over the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


def inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body as sent, or gunzipped when Content-Encoding says gzip, never more than `limit` bytes.

    A gzip body can inflate a thousandfold: it is decompressed in bounded steps and refused
    (BodyTooLarge) as soon as it passes the limit, instead of being decompressed whole first.
    Bytes that are not gzip are returned unchanged (the SQL layer then answers them as unparsable).
    """
    if len(body) > limit:
        raise BodyTooLarge(limit)
    if not content_encoding or content_encoding.strip().lower() != "gzip":
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        return body
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    return out


def sql_error(message: str, code: int) -> bytes:
    """CrateDB's error body, which the crate client turns into a ProgrammingError carrying `message`."""
    return orjson.dumps({"error": {"message": message, "code": code}})


class SqlListener:
    """A running listener: `url` to give to crate clients, `close()` to stop it."""

    def __init__(
        self,
        engine: Engine | Callable[[], Engine],
        users: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
        name: str = "sql",
        trust: bool = True,
    ) -> None:
        """`trust`: CrateDB's trust rules for empty users and passwords (sqlapi.check_basic_auth)."""
        if not _loopback(host):
            raise ValueError(f"the SQL listener binds loopback addresses only, not {host!r}")
        self.name = name
        self.pid = os.getpid()
        self._server = _Server((host, port), _Handler, engine, dict(users), limits)
        self._server.trust = trust
        self.host, self.port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name=f"finops-{name}-listener", daemon=True)
        self._thread.start()
        log.info("SQL listener started", extra={"listener": name, "url": self.url, "max_connections": limits.max_connections})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def active_connections(self) -> int:
        """Connections being served now (for tests and logs)."""
        return self._server.active

    def close(self) -> None:
        """Stop accepting, end the accept loop and close the socket (connections in flight finish)."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "error"


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded number of connection threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 engine: Engine | Callable[[], Engine], users: dict[str, str], limits: Limits) -> None:
        self.engine_source = engine
        self.users = users
        self.limits = limits
        self.trust = True
        self.stopping = threading.Event()
        self.active = 0
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._count = threading.Lock()
        super().__init__(address, handler)

    def engine(self) -> Engine:
        source = self.engine_source
        return source if isinstance(source, Engine) else source()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs in the accept loop: wait for a free slot (later connections queue in the backlog)."""
        deadline = time.monotonic() + self.limits.timeout_s
        while not self._slots.acquire(timeout=0.25):
            if self.stopping.is_set() or time.monotonic() > deadline:
                log.warning("SQL listener full: connection refused", extra={"active": self.active})
                _refuse(request)
                self.shutdown_request(request)
                return
        with self._count:
            self.active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count:
            self.active -= 1
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("SQL listener connection failed")


def _refuse(sock: socket.socket) -> None:
    body = sql_error("the embedded SQL listener is serving its maximum number of connections; retry", 5030)
    head = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    with contextlib.suppress(OSError):
        sock.settimeout(0.2)
        sock.recv(65536)  # read what the client sent: closing on unread bytes would reset, not answer
        sock.sendall(head + body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "finops-embedded"
    sys_version = ""
    server: _Server

    wbufsize = -1  # headers and a small body leave in one write (flushed after each request)

    def setup(self) -> None:
        self.request.settimeout(self.server.limits.timeout_s)  # idle keep-alive and slow reads alike
        # Without it a response sent in two writes waits for the client's delayed ACK: ~40 ms a statement.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, unknown method, ...) as JSON, not HTML."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a garbage request line: still a status line and headers
            self.request_version = "HTTP/1.1"
        phrase = message or _phrase(code)
        self._send(code, sql_error(phrase, code * 10), {"Connection": "close"})

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        try:
            sqlapi.check_basic_auth(self.headers.get("Authorization"), self.server.users, trust=self.server.trust)
            return True
        except Unauthorized as exc:
            status, headers, body = sqlapi.unauthorized_answer(exc)
            self.close_connection = True
            self._send(status, body, {"WWW-Authenticate": headers["WWW-Authenticate"], "Connection": "close"},
                       headers["Content-Type"])
            return False

    def _refuse_body(self, status: int, message: str) -> None:
        """Answer without reading the body: the connection cannot be reused after that."""
        self.close_connection = True
        self._send(status, sql_error(message, status * 10), {"Connection": "close"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"):
            self._refuse_body(400, "GET requests carry no body")
            return
        if not self._authorized():
            return
        if urlsplit(self.path).path != "/":
            self._send(404, sql_error(f"no such endpoint: GET {urlsplit(self.path).path} (GET /, POST /_sql)", 4040))
            return
        self._send(200, sqlapi.encode(sqlapi.banner()))

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        body = self._body()
        if body is None:
            return
        if parts.path != "/_sql":
            self._send(404, sql_error(f"no such endpoint: POST {parts.path} (GET /, POST /_sql)", 4040))
            return
        try:
            status, answer = sqlapi.handle_sql(
                body,
                self.server.engine(),
                default_schema=self.headers.get("Default-Schema"),
                content_encoding=None,
                types="types" in parse_qs(parts.query, keep_blank_values=True),
            )
        except Exception:  # noqa: BLE001 - the answer stays JSON and names nothing internal
            log.exception("SQL listener request failed")
            self._send(500, sql_error("internal error of the embedded engine (see the handler's log)", 5000))
            return
        self._send(status, sqlapi.encode(answer))

    def _body(self) -> bytes | None:
        """The request body within the limits (decompressed), or None once a refusal was sent."""
        limit = self.server.limits.max_body_bytes
        if self.headers.get("Transfer-Encoding"):
            self._refuse_body(411, "send a Content-Length (chunked bodies are not accepted)")
            return None
        length = (self.headers.get("Content-Length") or "").strip()
        if not length.isdigit():
            self._refuse_body(411, "a POST needs a Content-Length")
            return None
        if int(length) > limit:
            self._refuse_body(413, f"request body of {int(length)} bytes exceeds the limit of {limit} bytes")
            return None
        raw = self.rfile.read(int(length))
        if len(raw) != int(length):
            self._refuse_body(400, "request body shorter than its Content-Length")
            return None
        try:
            return inflate(raw, self.headers.get("Content-Encoding"), limit)
        except BodyTooLarge:
            self.close_connection = True
            self._send(413, sql_error(f"request body exceeds the limit of {limit} bytes once decompressed", 4130))
            return None
