"""Settings of the database: how every client talks to it, and the database-handler function itself.

The handler's SQL, embedded mode: its own SQL and its notebooks' never go to `PORT`. They go to
listeners of their own on 127.0.0.1 (functions.storage.sql_listener) over the same engine, so a
request never waits for a worker thread of the pool it is holding, and notebooks cannot take the
handler's slots.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import Field

from functions.settings import _EnvSettings


class DatabaseClientSettings(_EnvSettings):
    """How every `crate` client of a process talks to its database (functions.clients.db.Database)."""

    plain_cratedb: bool = Field(default=False, alias="FINOPS_DB_PLAIN_CRATEDB", description="Send only plain CrateDB SQL, even to the embedded engine: its `GET /` banner is ignored, so callers take their CrateDB path (statements one by one, bulk_args, no payloads by reference). For checking CrateDB mode's SQL without a CrateDB server; off in production.")


def database_client_settings() -> DatabaseClientSettings:
    """Read on every new connection, not cached: cheap, and a test can switch it per process or per test."""
    return DatabaseClientSettings.from_env()


class DbHandlerSettings(_EnvSettings):
    """Where the data lives and who may touch it: the database-handler function's settings.

    Read with a few rules of their own (`from_env`): the users come from FINOPS_DB_USERS_FILE when it
    is set, the DuckDB file defaults under FINOPS_STATE_DIR, the mode is read in any case, and no two
    listeners may share a port.
    """

    mode: Literal["embedded", "cratedb"] = Field(default="embedded", alias="FINOPS_DB_MODE", description="`embedded` (this process owns a DuckDB file and speaks CrateDB's HTTP protocol) or `cratedb`; any case.")
    db_url: str = Field(default="", alias="FINOPS_DB_URL", description="CrateDB's HTTP URL (cratedb mode only; required there).")
    db_path: str = Field(default=":memory:", alias="FINOPS_DB_PATH", description="The DuckDB file (embedded mode); unset = `$FINOPS_STATE_DIR/db/finops.duckdb` when FINOPS_STATE_DIR is set, else `:memory:`.")
    users: dict[str, str] = Field(default_factory=lambda: {"crate": ""}, alias="FINOPS_DB_USERS", description='JSON object `{"user": "password"}`: the embedded engine\'s users; unset = `{"crate": ""}`.')
    users_file: str = Field(default="", alias="FINOPS_DB_USERS_FILE", description="A file holding that JSON object (a mounted Secret): read instead of FINOPS_DB_USERS, so no password sits in the handler's environment (which /proc/<pid>/environ shows to the same user).")
    port: int = Field(default=8080, alias="PORT", description="The port this process serves HTTP on (`/upload`, `/compute`, the public `/_sql`).")
    sql_port: int = Field(default=0, ge=0, le=65535, alias="FINOPS_DB_SQL_PORT", description="Embedded mode: loopback port of the handler's own SQL listener (uploads, findings, ledger); `0` = a free port chosen at start.")
    notebook_sql_port: int = Field(default=0, ge=0, le=65535, alias="FINOPS_DB_NOTEBOOK_SQL_PORT", description="Embedded mode: loopback port of the notebooks' SQL listener (the URL a notebook run is given); `0` = a free port.")
    sql_connections: int = Field(default=64, ge=1, le=4096, alias="FINOPS_DB_SQL_CONNECTIONS", description="Connections each SQL listener serves at once, one thread each (more wait, then 503).")
    sql_max_body_mb: int = Field(default=256, ge=1, alias="FINOPS_DB_SQL_MAX_BODY_MB", description="Largest `/_sql` body, MiB, also after gzip decompression, on the listeners and the public `/_sql` (413 beyond).")
    sql_timeout_s: float = Field(default=60.0, gt=0, alias="FINOPS_DB_SQL_TIMEOUT", description="Seconds a listener connection may stay silent, and may wait for a free slot.")
    statement_timeout_s: float = Field(default=300.0, ge=0, alias="FINOPS_DB_STATEMENT_TIMEOUT", description="Embedded mode: seconds one statement may run before the engine cancels it (400 naming the limit), so one runaway query cannot hold the engine's lock; `0` = no limit.")
    rejects_retention_days: int = Field(default=30, ge=1, alias="FINOPS_REJECTS_RETENTION_DAYS", description="Days a rejected row stays in `finops_rejects`.")
    ledger_retention_days: int = Field(default=400, ge=1, alias="FINOPS_LEDGER_RETENTION_DAYS", description="Days a run's entries stay in `finops_ledger`.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build from environment variables; a bad value is Misconfigured, naming the variable."""
        env = os.environ if environ is None else environ
        values = cls._env_values(env)
        values["mode"] = (env.get("FINOPS_DB_MODE") or "embedded").strip().lower()
        values["db_path"] = env.get("FINOPS_DB_PATH") or _default_path(env)
        values.pop("users", None)
        users_var, users_text = cls._users_text(env)
        if users_text:
            try:
                values["users"] = json.loads(users_text)
            except ValueError as exc:
                raise cls._misconfigured(users_var, f"not JSON: {exc}") from exc
        settings = cls._validated(values, {"users": users_var})
        if settings.mode == "cratedb" and not settings.db_url:
            raise cls._misconfigured("FINOPS_DB_URL", "required when FINOPS_DB_MODE=cratedb")
        ports = [("PORT", settings.port), ("FINOPS_DB_SQL_PORT", settings.sql_port),
                 ("FINOPS_DB_NOTEBOOK_SQL_PORT", settings.notebook_sql_port)]
        taken: dict[int, str] = {}
        for var, port in ports:
            if port and port in taken:
                raise cls._misconfigured(var, f"port {port} is {taken[port]}'s already: each listener needs its own "
                                              "(0 = a free one)")
            taken.setdefault(port, var)
        return settings

    @classmethod
    def _users_text(cls, env: Mapping[str, str]) -> tuple[str, str]:
        """(variable, JSON text) of the users: from FINOPS_DB_USERS_FILE when set (a Secret mounted as a
        file keeps every password out of the environment, which /proc/<pid>/environ shows to the same
        user), else FINOPS_DB_USERS."""
        path = env.get("FINOPS_DB_USERS_FILE")
        if not path:
            return "FINOPS_DB_USERS", env.get("FINOPS_DB_USERS") or ""
        try:
            with open(path, encoding="utf-8") as fh:
                return "FINOPS_DB_USERS_FILE", fh.read()
        except OSError as exc:
            raise cls._misconfigured("FINOPS_DB_USERS_FILE", f"cannot read {path}: {exc.strerror}") from exc

    @property
    def embedded(self) -> bool:
        return self.mode == "embedded"

    @property
    def sql_max_body_bytes(self) -> int:
        return self.sql_max_body_mb * 1024 * 1024

    def sql_url(self) -> str:
        """Where the handler's own SQL goes: CrateDB, or (embedded) this process's own SQL listener."""
        return self.db_url if not self.embedded else _loopback(self.sql_port, "FINOPS_DB_SQL_PORT")

    def notebook_sql_url(self) -> str:
        """The database URL a notebook run is given: CrateDB, or (embedded) the notebooks' SQL listener."""
        return self.db_url if not self.embedded else _loopback(self.notebook_sql_port, "FINOPS_DB_NOTEBOOK_SQL_PORT")


def _loopback(port: int, variable: str) -> str:
    """A listener's URL; port 0 means the listener was never started (the handler's router.ready starts it)."""
    if not port:
        raise RuntimeError(f"the embedded SQL listener ({variable}) is not started: pass the settings through "
                           "functions.stages.dbhandler.router.ready() first")
    return f"http://127.0.0.1:{port}"


def _default_path(env: Mapping[str, str]) -> str:
    state = env.get("FINOPS_STATE_DIR")
    return os.path.join(state, "db", "finops.duckdb") if state else ":memory:"
