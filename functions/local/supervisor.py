"""The local stack: the broker, the scheduler, and one functions-framework process per Knative Service.

Every Service in knative/ that sets FUNCTION_TARGET becomes
`python -m functions_framework --target T --source <functions/main.py> --host 127.0.0.1 --port P`,
with the Service's env plus the local settings (see `function_env`). The supervisor waits until each
answers `GET /`, restarts crashed ones (with backoff), stops all on exit, and keeps <state>/stack.json
(URLs, pids, the embedded database's user) current. The database password's source of truth is the
local Secret `finops/finops-db-password` (referenced by the DatabaseConfig `finops/finops-db`): created
with a random password on the first `up`, and when it changes the database handler is restarted.

Callers are authenticated on the local stack too (functions.clients.callers): the local Secret
`finops/finops-auth-token` holds the shared caller token (random, created on the first `up`); it is
written to `<state>/auth/token` (0600) and every function gets FINOPS_AUTH_TOKEN_FILE naming that
file. The broker's ingress and its deliveries, the scheduler's ticks and the CLI send it; when the
Secret changes the file is rewritten and everyone re-reads it (no restart).

The forecaster (functions.stages.forecaster, a KServe model server, not a function) is started beside
them when the `forecast` extra is installed (kserve, statsforecast and numpy importable): service
`forecaster` in stack.json, its v2 infer URL `<url>/v2/models/forecaster/infer` (an InferenceConfig's
kserve.modelUrl on the local stack). Without the extra it is left out, saying so in the log.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets as pysecrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from functions.clients.callers import TokenFile
from functions.clients.kube import LocalReader
from functions.local.broker import Broker, load_manifests, load_triggers
from functions.local.crstore import CrStore
from functions.local.scheduler import Scheduler
from functions.logs import get_logger
from functions.models.k8s import secret_data

log = get_logger("local.supervisor")
DB_NAMESPACE, DB_SECRET, DB_CONFIG, DB_USER = "finops", "finops-db-password", "finops-db", "finops"
AUTH_SECRET, AUTH_KEY = "finops-auth-token", "token"
READY_TIMEOUT = 60.0
FORECASTER = "forecaster"
FORECAST_EXTRA = ("kserve", "statsforecast", "numpy")


@dataclass
class Function:
    """One Knative Service run as a local process."""

    name: str
    target: str
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_restart: float = 0.0
    command: list[str] | None = None
    """The process to run instead of functions-framework (the forecaster); `--port` is added."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def stack_file(state_dir: Path) -> Path:
    return Path(state_dir) / "stack.json"


def read_stack(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(stack_file(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def running_stack(state_dir: Path) -> dict[str, Any] | None:
    """stack.json of a live `finops up` (its pid answers), else None."""
    stack = read_stack(state_dir)
    pid = stack.get("pid")
    if not stack.get("ready") or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return stack


def functions_from_manifests(knative_dir: Path) -> list[Function]:
    """The Services of knative/ that name a FUNCTION_TARGET (others, like event-display, are not ours)."""
    out = []
    for doc in load_manifests(knative_dir):
        if doc.get("kind") != "Service" or not str(doc.get("apiVersion", "")).startswith("serving.knative.dev/"):
            continue
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        env = {e["name"]: str(e.get("value", "")) for c in containers for e in c.get("env", []) if "name" in e}
        if env.get("FUNCTION_TARGET"):
            out.append(Function(doc["metadata"]["name"], env["FUNCTION_TARGET"], env))
    return out


def forecaster_process() -> Function | None:
    """The forecaster as a local process when the `forecast` extra is installed, else None (logged)."""
    missing = [name for name in FORECAST_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        log.info("forecaster not started: the forecast extra is not installed",
                 extra={"missing": missing, "install": "pip install 'finops-functions[forecast]'"})
        return None
    command = [sys.executable, "-m", "functions.stages.forecaster", "--host", "127.0.0.1", "--model-dir",
               os.environ.get("FINOPS_FORECASTER_MODEL_DIR", "/nonexistent")]
    return Function(FORECASTER, "", {}, command=command)


def function_env(fn: Function, urls: dict[str, str], state_dir: Path, broker_url: str,
                 db_users: dict[str, str]) -> dict[str, str]:
    """The environment of one function process: ours, then the Service's, then the local settings."""
    return {
        **os.environ,
        "FINOPS_AUTH": "auto",  # the caller token whatever the shell says; a Service's own env may say `open`
        **fn.env,
        "FINOPS_AUTH_TOKEN_FILE": str(auth_token_file(state_dir)),
        "K_SERVICE": fn.name,
        "PORT": str(fn.port),
        "K_SINK": broker_url,
        "FINOPS_BROKER_URL": broker_url,
        "FINOPS_STATE_DIR": str(state_dir),
        "FINOPS_KUBE": "local",
        "FINOPS_EXPORTER_URL": urls.get("exporter", ""),
        "FINOPS_DBHANDLER_URL": urls.get("dbhandler", ""),
        "FINOPS_DB_MODE": "embedded",
        "FINOPS_DB_PATH": str(state_dir / "db" / "finops.duckdb"),
        "FINOPS_DB_USERS": json.dumps(db_users),
        # no API server locally: the optimizer process itself is the admission endpoint (the demo calls it)
        "FINOPS_OPTIMIZER_ADMISSION": "true",
        # the optimizer reads carbon intensity from the same embedded database (its /_sql)
        "FINOPS_CARBON_DB_URL": urls.get("dbhandler", ""),
        "FINOPS_CARBON_DB_USER": next(iter(db_users), ""),
        "FINOPS_CARBON_DB_PASSWORD": next(iter(db_users.values()), ""),
    }


def main_source() -> str:
    """functions/main.py, found without importing it (works from a checkout and when installed)."""
    spec = importlib.util.find_spec("functions.main")
    if spec is None or not spec.origin:
        raise RuntimeError("functions/main.py not found: is the finops-functions package installed?")
    return spec.origin


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now: the OS picks it, the caller binds it next.

    The one helper for this, here and in the tests that start functions of their own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    state_dir: Path
    knative_dir: Path
    eventsources_dir: Path | None
    functions: list[Function] = field(default_factory=list)
    broker: Broker | None = None
    scheduler: Scheduler | None = None
    db_user: str = DB_USER
    db_password: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> dict[str, Any]:
        """Start everything and return stack.json's content; raises RuntimeError when a function never answers."""
        self.state_dir = self.state_dir.resolve()
        (self.state_dir / "db").mkdir(parents=True, exist_ok=True)
        self.db_password = ensure_db_credentials(self.state_dir)
        self.db_user = db_user_from_store(self.state_dir)
        ensure_auth_token(self.state_dir)
        token = TokenFile(str(auth_token_file(self.state_dir))).read
        self.functions = functions_from_manifests(self.knative_dir)
        forecaster = forecaster_process()
        if forecaster is not None and all(fn.name != FORECASTER for fn in self.functions):
            self.functions.append(forecaster)
        for fn in self.functions:
            fn.port = free_port()
        urls = {fn.name: fn.url for fn in self.functions}
        self.broker = Broker(load_triggers(self.knative_dir), urls.get, self.state_dir, token=token)
        broker_url = self.broker.start()
        source = main_source()
        for fn in self.functions:
            fn.env = function_env(fn, urls, self.state_dir, broker_url, {self.db_user: self.db_password})
            self._spawn(fn, source)
        for fn in self.functions:
            try:
                self._wait_ready(fn)
            except RuntimeError as exc:
                if fn.name != FORECASTER:
                    raise
                # optional: the stack runs without it (a run needing it fails its infer step, saying why);
                # the restart loop tries it again
                log.warning("forecaster not ready; the stack runs without it", extra={"error": str(exc)})
        self.scheduler = Scheduler(broker_url, self.state_dir, self.eventsources_dir, token=token)
        self.scheduler.start()
        return self._write_stack(ready=True)

    def run_until_stopped(self, poll: float = 1.0) -> None:
        """Restart crashed functions and follow the database Secret until stop() is called."""
        source = main_source()
        while not self._stop.wait(poll):
            for fn in self.functions:
                if fn.proc is not None and fn.proc.poll() is not None and time.monotonic() >= fn.next_restart:
                    log.warning("function exited; restarting", extra={"function": fn.name, "rc": fn.proc.returncode,
                                                                      "restarts": fn.restarts})
                    fn.restarts += 1
                    fn.next_restart = time.monotonic() + min(30.0, 2.0 ** fn.restarts)
                    self._spawn(fn, source)
                    self._write_stack(ready=True)
            self._follow_db_secret(source)
            ensure_auth_token(self.state_dir)  # a changed Secret rewrites the file everyone reads

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler:
            self.scheduler.stop()
        for fn in self.functions:
            if fn.proc is not None and fn.proc.poll() is None:
                fn.proc.terminate()
        for fn in self.functions:
            if fn.proc is not None:
                try:
                    fn.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    fn.proc.kill()
                    fn.proc.wait()
        if self.broker:
            self.broker.stop()
        self._write_stack(ready=False)

    def _spawn(self, fn: Function, source: str) -> None:
        cmd = [*fn.command, "--port", str(fn.port)] if fn.command else [
            sys.executable, "-m", "functions_framework", "--target", fn.target, "--source", source,
            "--host", "127.0.0.1", "--port", str(fn.port)]
        fn.proc = subprocess.Popen(cmd, env=fn.env)
        log.info("function started", extra={"function": fn.name, "url": fn.url, "pid": fn.proc.pid})

    def _wait_ready(self, fn: Function) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if fn.proc is not None and fn.proc.poll() is not None:
                raise RuntimeError(f"function {fn.name} exited with code {fn.proc.returncode} while starting")
            try:
                httpx.get(fn.url + "/", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"function {fn.name} did not answer GET / within {READY_TIMEOUT:.0f}s at {fn.url}")

    def _follow_db_secret(self, source: str) -> None:
        password, user = db_password_from_store(self.state_dir), db_user_from_store(self.state_dir)
        if not password or (password, user) == (self.db_password, self.db_user):
            return
        log.info("database credentials changed; restarting the database handler", extra={"user": user})
        self.db_password, self.db_user = password, user
        for fn in self.functions:
            fn.env["FINOPS_DB_USERS"] = json.dumps({user: password})
            if fn.target == "dbhandler" and fn.proc is not None:
                fn.proc.terminate()
                fn.proc.wait(timeout=10)
                self._spawn(fn, source)
                self._wait_ready(fn)
        self._write_stack(ready=True)

    def _write_stack(self, ready: bool) -> dict[str, Any]:
        stack = {
            "pid": os.getpid(), "ready": ready, "state_dir": str(self.state_dir),
            "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "broker": self.broker.url if self.broker else "",
            "services": {fn.name: {"url": fn.url, "target": fn.target, "pid": fn.proc.pid if fn.proc else None}
                         for fn in self.functions},
            "db": {"url": next((fn.url for fn in self.functions if fn.target == "dbhandler"), ""),
                   "user": self.db_user, "password": self.db_password,
                   "secret": f"{DB_NAMESPACE}/{DB_SECRET}", "databaseConfig": f"{DB_NAMESPACE}/{DB_CONFIG}"},
            "auth": {"tokenFile": str(auth_token_file(self.state_dir)), "secret": f"{DB_NAMESPACE}/{AUTH_SECRET}"},
        }
        path = stack_file(self.state_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)  # it holds the database password
        os.replace(tmp, path)
        return stack


def db_password_from_store(state_dir: Path) -> str:
    secret = CrStore(state_dir).get("Secret", DB_NAMESPACE, DB_SECRET)
    if secret is None:
        return ""
    try:
        return secret_data(secret).get("password", "")
    except ValueError:
        return ""


def db_user_from_store(state_dir: Path) -> str:
    """The DatabaseConfig finops/finops-db's username (a user may apply one with another name)."""
    dbconf = CrStore(state_dir).get("DatabaseConfig", DB_NAMESPACE, DB_CONFIG) or {}
    return str(dbconf.get("spec", {}).get("username") or DB_USER)


def ensure_db_credentials(state_dir: Path) -> str:
    """The embedded database's password: the local Secret's, else a new random one stored as that Secret."""
    store = CrStore(state_dir)
    password = db_password_from_store(state_dir) or str(read_stack(state_dir).get("db", {}).get("password") or "")
    password = password or pysecrets.token_urlsafe(18)
    docs: list[dict[str, Any]] = []
    if not db_password_from_store(state_dir):
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": DB_SECRET, "namespace": DB_NAMESPACE},
                     "data": {"password": base64.b64encode(password.encode()).decode()}})
    if store.get("DatabaseConfig", DB_NAMESPACE, DB_CONFIG) is None:
        docs.append({"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig",
                     "metadata": {"name": DB_CONFIG, "namespace": DB_NAMESPACE},
                     "spec": {"username": DB_USER, "passwordSecretRef": {
                         "name": DB_SECRET, "namespace": DB_NAMESPACE, "key": "password"}}})
    if docs:
        store.apply(docs)
    return password


def auth_token_file(state_dir: Path) -> Path:
    """The file holding the local stack's caller token (what FINOPS_AUTH_TOKEN_FILE names)."""
    return Path(state_dir) / "auth" / "token"


def ensure_auth_token(state_dir: Path) -> str:
    """The caller token: the local Secret finops/finops-auth-token's (created random on first use),
    written to auth_token_file (0600 in a 0700 folder) whenever it differs."""
    secret = LocalReader(state_dir).get("Secret", DB_NAMESPACE, AUTH_SECRET)  # cheap: called every second
    token = ""
    if secret is not None:
        try:
            token = secret_data(secret).get(AUTH_KEY, "").strip()
        except ValueError:
            token = ""
    if not token:
        token = pysecrets.token_urlsafe(32)
        CrStore(state_dir).apply([{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": AUTH_SECRET, "namespace": DB_NAMESPACE},
                      "data": {AUTH_KEY: base64.b64encode(token.encode()).decode()}}])
    path = auth_token_file(state_dir)
    try:
        current = path.read_text(encoding="utf-8").strip()
    except OSError:
        current = None
    if current != token:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
    return token


def auth_headers(stack: dict[str, Any]) -> dict[str, str]:
    """`Authorization: Bearer <caller token>` of a running stack (from stack.json), for the CLI's calls."""
    path = str((stack.get("auth") or {}).get("tokenFile") or "")
    token = TokenFile(path).read() if path else ""
    return {"Authorization": f"Bearer {token}"} if token else {}
