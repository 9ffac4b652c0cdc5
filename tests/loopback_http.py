"""Tiny real HTTP(S) servers on 127.0.0.1 for client tests: a scripted origin and a forward proxy.

`serve(route)` answers each request with `route(seen)` (a function) or the next of a list of
Replies (the last one repeats); every request is recorded in `server.seen`.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_cert: dict[str, Any] | None = None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # announce the full length, send half, then close (a broken download)


Route = Callable[[Seen], Reply]


@dataclass
class Server:
    url: str
    seen: list[Seen]
    port: int


def _as_route(route: Route | Reply | Sequence[Reply]) -> Route:
    if isinstance(route, Reply):
        return lambda _seen: route
    if callable(route):
        return route
    replies = list(route)
    lock = threading.Lock()

    def next_reply(_seen: Seen) -> Reply:
        with lock:
            return replies.pop(0) if len(replies) > 1 else replies[0]

    return next_reply


class _Handler(BaseHTTPRequestHandler):
    server: _Origin

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, cert or None)
        self.server.seen.append(seen)
        reply = self.server.route(seen)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body[: len(reply.body) // 2] if reply.truncate else reply.body)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass


class _Origin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, route: Route) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route
        self.seen: list[Seen] = []


@contextmanager
def _running(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serve(route: Route | Reply | Sequence[Reply], *, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """An origin server on 127.0.0.1 (https when `tls` is a server-side context)."""
    server = _Origin(_as_route(route))
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    scheme = "https" if tls is not None else "http"
    with _running(server):
        yield Server(f"{scheme}://127.0.0.1:{port}", server.seen, port)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _Proxy

    def _forward(self) -> None:
        target = urllib.parse.urlsplit(self.path)  # absolute-form request line: http://host:port/path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        conn.request(self.command, path, body=body or None, headers=headers)
        upstream = conn.getresponse()
        data = upstream.read()
        self.send_response(upstream.status)
        for name, value in upstream.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[Seen] = []


@contextmanager
def forward_proxy() -> Iterator[Server]:
    """A plain-HTTP forward proxy that records the absolute-form requests it relays."""
    proxy = _Proxy()
    port = proxy.server_address[1]
    with _running(proxy):
        yield Server(f"http://127.0.0.1:{port}", proxy.seen, port)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
