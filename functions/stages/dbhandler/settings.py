"""Typed settings of the database-handler function, read once from the environment and injected.

| Variable | Meaning | Default |
|---|---|---|
| `FINOPS_DB_MODE` | `embedded` (this process owns a DuckDB file and speaks CrateDB's HTTP protocol) or `cratedb` | `embedded` |
| `FINOPS_DB_URL` | CrateDB's HTTP URL (cratedb mode only) | - |
| `FINOPS_DB_PATH` | the DuckDB file (embedded mode) | `$FINOPS_STATE_DIR/db/finops.duckdb`, else `:memory:` |
| `FINOPS_DB_USERS` | JSON object `{"user": "password"}`: the embedded engine's users | `{"crate": ""}` |
| `FINOPS_DB_USERS_FILE` | a file holding that JSON object (a mounted Secret): read instead of `FINOPS_DB_USERS`, so no password sits in the handler's environment | - |
| `FINOPS_REJECTS_RETENTION_DAYS` | days a rejected row stays in `finops_rejects` | `30` |
| `FINOPS_LEDGER_RETENTION_DAYS` | days a run's entries stay in `finops_ledger` | `400` |
| `FINOPS_DB_SQL_PORT` | embedded mode: loopback port of the handler's own SQL listener (uploads, findings, ledger); `0` = a free port chosen at start | `0` |
| `FINOPS_DB_NOTEBOOK_SQL_PORT` | embedded mode: loopback port of the notebooks' SQL listener (the URL a notebook run is given); `0` = a free port | `0` |
| `FINOPS_DB_SQL_CONNECTIONS` | connections each SQL listener serves at once, one thread each (more wait, then 503) | `64` |
| `FINOPS_DB_SQL_MAX_BODY_MB` | largest `/_sql` body, also after gzip decompression, on the listeners and the public `/_sql` (413 beyond) | `256` |
| `FINOPS_DB_SQL_TIMEOUT` | seconds a listener connection may stay silent, and may wait for a free slot | `60` |
| `FINOPS_DB_STATEMENT_TIMEOUT` | embedded mode: seconds one statement may run before the engine cancels it (400 naming the limit), so one runaway query cannot hold the engine's lock; `0` = no limit | `300` |
| `PORT` | the port this process serves HTTP on (`/upload`, `/compute`, the public `/_sql`) | `8080` |

Embedded mode: the handler's own SQL and its notebooks' never go to `PORT`. They go to listeners
of their own on 127.0.0.1 (functions.storage.sql_listener) over the same engine, so a request never
waits for a worker thread of the pool it is holding, and notebooks cannot take the handler's slots.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from functions.errors import FieldError, InvalidInput, field_errors


class DbHandlerSettings(BaseModel):
    """Where the data lives and who may touch it."""

    mode: Literal["embedded", "cratedb"] = Field("embedded", description="embedded (DuckDB in this process) or cratedb")
    db_url: str = Field("", description="CrateDB HTTP URL (cratedb mode)")
    db_path: str = Field(":memory:", description="DuckDB file of the embedded engine")
    users: dict[str, str] = Field(default_factory=lambda: {"crate": ""}, description="embedded users: name -> password")
    port: int = Field(8080, description="the port this process serves on")
    sql_port: int = Field(0, ge=0, le=65535, description="embedded: the handler's own SQL listener (0 = free port)")
    notebook_sql_port: int = Field(0, ge=0, le=65535, description="embedded: the notebooks' SQL listener (0 = free port)")
    sql_connections: int = Field(64, ge=1, le=4096, description="connections each SQL listener serves at once")
    sql_max_body_mb: int = Field(256, ge=1, description="largest /_sql body (also decompressed), MiB")
    sql_timeout_s: float = Field(60.0, gt=0, description="idle and slot-wait timeout of listener connections, s")
    statement_timeout_s: float = Field(300.0, ge=0, description="embedded: seconds a statement may run (0 = no limit)")
    rejects_retention_days: int = Field(30, ge=1, description="days a rejected row stays in finops_rejects")
    ledger_retention_days: int = Field(400, ge=1, description="days a run's entries stay in finops_ledger")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DbHandlerSettings:
        """Build from environment variables; a bad value is an InvalidInput naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"mode": (env.get("FINOPS_DB_MODE") or "embedded").strip().lower()}
        if env.get("FINOPS_DB_URL"):
            values["db_url"] = env["FINOPS_DB_URL"]
        values["db_path"] = env.get("FINOPS_DB_PATH") or _default_path(env)
        users_var, users_text = _users_text(env)
        if users_text:
            try:
                values["users"] = json.loads(users_text)
            except ValueError as exc:
                raise InvalidInput("bad settings", [FieldError(users_var, f"not JSON: {exc}")]) from exc
        for key, var in _PLAIN.items():
            if env.get(var):
                values[key] = env[var]
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:  # named by the variable the operator set, not the field
            errors = [FieldError(_variable(e.loc), e.msg) for e in field_errors(exc)]
            raise InvalidInput("bad settings", errors) from exc
        if settings.mode == "cratedb" and not settings.db_url:
            raise InvalidInput("bad settings", [FieldError("FINOPS_DB_URL", "required when FINOPS_DB_MODE=cratedb")])
        ports = [("PORT", settings.port), ("FINOPS_DB_SQL_PORT", settings.sql_port),
                 ("FINOPS_DB_NOTEBOOK_SQL_PORT", settings.notebook_sql_port)]
        taken: dict[int, str] = {}
        for var, port in ports:
            if port and port in taken:
                raise InvalidInput("bad settings", [FieldError(var, f"port {port} is {taken[port]}'s already: each "
                                                                    "listener needs its own (0 = a free one)")])
            taken.setdefault(port, var)
        return settings

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
    """A listener's URL; port 0 means the listener was never started (service.ready starts it)."""
    if not port:
        raise RuntimeError(f"the embedded SQL listener ({variable}) is not started: pass the settings through "
                           "functions.stages.dbhandler.service.ready() first")
    return f"http://127.0.0.1:{port}"


_PLAIN = {  # field -> the variable it is read from as is
    "port": "PORT", "rejects_retention_days": "FINOPS_REJECTS_RETENTION_DAYS",
    "ledger_retention_days": "FINOPS_LEDGER_RETENTION_DAYS", "sql_port": "FINOPS_DB_SQL_PORT",
    "notebook_sql_port": "FINOPS_DB_NOTEBOOK_SQL_PORT", "sql_connections": "FINOPS_DB_SQL_CONNECTIONS",
    "sql_max_body_mb": "FINOPS_DB_SQL_MAX_BODY_MB", "sql_timeout_s": "FINOPS_DB_SQL_TIMEOUT",
    "statement_timeout_s": "FINOPS_DB_STATEMENT_TIMEOUT",
}
_VARIABLES = {**_PLAIN, "mode": "FINOPS_DB_MODE", "db_url": "FINOPS_DB_URL", "db_path": "FINOPS_DB_PATH",
              "users": "FINOPS_DB_USERS"}


def _users_text(env: Mapping[str, str]) -> tuple[str, str]:
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
        raise InvalidInput("bad settings", [FieldError("FINOPS_DB_USERS_FILE", f"cannot read {path}: {exc.strerror}")]) from exc


def _variable(loc: str) -> str:
    head, dot, rest = loc.partition(".")
    return _VARIABLES.get(head, head) + dot + rest


def _default_path(env: Mapping[str, str]) -> str:
    state = env.get("FINOPS_STATE_DIR")
    return os.path.join(state, "db", "finops.duckdb") if state else ":memory:"
