"""A real database handler on 127.0.0.1: functions-framework running the dbhandler target.

`start_dbhandler(tmp_path)` starts it (embedded mode, a fresh DuckDB file under tmp_path, users
from USERS, its two internal SQL listeners on free ports it records), waits until `GET /` answers and returns a DbHandler; `stop()` ends the process.
The pytest fixture `dbhandler` (import `dbhandler_fixture`) does both. SOURCE is the functions-framework source file; point it
at functions/main.py once the target lives there.

Functions are authenticated as in production: `start_function` gives each one the shared caller token
TOKEN (written to a file beside its log, FINOPS_AUTH_TOKEN_FILE) unless the env says otherwise; send
AUTH (`Authorization: Bearer TOKEN`) with every call but the probes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.local.supervisor import free_port

TESTS = Path(__file__).resolve().parent
SOURCE = TESTS / "dbhandler_target.py"
TARGET = "dbhandler"
USERS = {"crate": "", "finops": "s3cret"}
TOKEN = "tests-caller-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class DbHandler:
    url: str
    port: int
    db_path: Path
    process: subprocess.Popen[bytes]
    log: Path
    sql_port: int = 0
    """The handler's own SQL listener (embedded mode; FINOPS_DB_SQL_PORT)."""
    notebook_sql_port: int = 0
    """The notebooks' SQL listener: the port a notebook run is given (FINOPS_DB_NOTEBOOK_SQL_PORT)."""

    def auth(self, user: str = "finops", password: str = "s3cret") -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def upload(self, body: Any, params: Mapping[str, str], *, content_type: str = "application/json",
               headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST /upload with JSON (any Python value) or raw bytes; finops credentials unless headers given."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": content_type, **(self.auth() if headers is None else dict(headers))}
        return httpx.post(f"{self.url}/upload", params=dict(params), content=data, headers=sent, timeout=60)

    def sql(self, stmt: str, args: list[Any] | None = None) -> list[list[Any]]:
        """Rows of a query, through the crate client against the handler's /_sql (like a notebook)."""
        from crate import client

        conn = client.connect(self.url, username="finops", password="s3cret")
        try:
            cursor = conn.cursor()
            cursor.execute(stmt, args)
            return [list(r) for r in cursor.fetchall()]
        finally:
            conn.close()

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a function process, killing it if it does not stop within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_function(target: str, port: int, env: Mapping[str, str], log: Path, source: Path | None = None) -> subprocess.Popen[bytes]:
    """Serve one target under functions-framework on 127.0.0.1:port and wait until GET / answers 200.
    The caller token is TOKEN unless `env` sets FINOPS_AUTH or FINOPS_AUTH_TOKEN_FILE."""
    env = dict(env)
    if "FINOPS_AUTH" not in env and "FINOPS_AUTH_TOKEN_FILE" not in env:
        token_file = log.parent / "auth-token"
        token_file.write_text(TOKEN + "\n", encoding="utf-8")
        env["FINOPS_AUTH_TOKEN_FILE"] = str(token_file)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--target", target, "--source", str(source or SOURCE),
             "--host", "127.0.0.1", "--port", str(port)],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("FINOPS_AUTH")}, "PORT": str(port), **env},
            stdout=out, stderr=subprocess.STDOUT, cwd=TESTS.parent,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{target} exited with {process.returncode}: {log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"{target} did not answer within 30 s: {log.read_text()[-4000:]}")


def start_dbhandler(tmp_path: Path, env: Mapping[str, str] | None = None, users: Mapping[str, str] = USERS) -> DbHandler:
    port = free_port()
    db_path = tmp_path / "db" / "finops.duckdb"
    log = tmp_path / "dbhandler.log"
    environ = {"FINOPS_DB_MODE": "embedded", "FINOPS_DB_PATH": str(db_path),
               "FINOPS_DB_USERS": json.dumps(dict(users)),
               "FINOPS_DB_SQL_PORT": str(free_port()), "FINOPS_DB_NOTEBOOK_SQL_PORT": str(free_port()), **dict(env or {})}
    process = start_function(TARGET, port, environ, log)
    return DbHandler(f"http://127.0.0.1:{port}", port, db_path, process, log,
                     int(environ["FINOPS_DB_SQL_PORT"]), int(environ["FINOPS_DB_NOTEBOOK_SQL_PORT"]))


@pytest.fixture(name="dbhandler")
def dbhandler_fixture(tmp_path: Path) -> Iterator[DbHandler]:
    """Import `dbhandler_fixture` into a test module and ask for `dbhandler`."""
    server = start_dbhandler(tmp_path)
    try:
        yield server
    finally:
        server.stop()
