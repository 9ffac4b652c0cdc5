"""A tiny real HTTP server mounting functions.storage.sqlapi over an Engine, for tests on 127.0.0.1.

The database handler function serves the same functions in production; this stands in for it so
the storage layer can be tested through the real `crate` client before the handler exists.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from functions.errors import Unauthorized
from functions.storage import sqlapi
from functions.storage.engine import Engine


def _handler(engine: Engine, users: Mapping[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            pass

        def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            try:
                sqlapi.check_basic_auth(self.headers.get("Authorization"), users)
                return True
            except Unauthorized as exc:
                status, headers, body = sqlapi.unauthorized_answer(exc)
                self.close_connection = True
                self._send(status, body, headers | {"Connection": "close"})
                return False

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if self._authorized():
                self._send(200, sqlapi.encode(sqlapi.banner()), {"Content-Type": "application/json"})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self._authorized():
                return
            if not self.path.startswith("/_sql"):
                self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json"})
                return
            status, answer = sqlapi.handle_sql(
                body,
                engine,
                default_schema=self.headers.get("Default-Schema"),
                content_encoding=self.headers.get("Content-Encoding"),
                types="types" in self.path,
            )
            self._send(status, sqlapi.encode(answer), {"Content-Type": "application/json"})

    return Handler


@contextmanager
def serve(engine: Engine, users: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve `engine` on a free loopback port; yields the base URL; stops the server on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(engine, dict(users or {})))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
