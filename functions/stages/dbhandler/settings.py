"""Typed settings of the database-handler function, read once from the environment and injected.

| Variable | Meaning | Default |
|---|---|---|
| `FINOPS_DB_MODE` | `embedded` (this process owns a DuckDB file and speaks CrateDB's HTTP protocol) or `cratedb` | `embedded` |
| `FINOPS_DB_URL` | CrateDB's HTTP URL (cratedb mode only) | - |
| `FINOPS_DB_PATH` | the DuckDB file (embedded mode) | `$FINOPS_STATE_DIR/db/finops.duckdb`, else `:memory:` |
| `FINOPS_DB_USERS` | JSON object `{"user": "password"}`: the embedded engine's users | `{"crate": ""}` |
| `FINOPS_REJECTS_RETENTION_DAYS` | days a rejected row stays in `finops_rejects` | `30` |
| `FINOPS_LEDGER_RETENTION_DAYS` | days a run's entries stay in `finops_ledger` | `400` |
| `PORT` | the port this process listens on; in embedded mode the handler's own SQL client calls itself there | `8080` |
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
        if env.get("FINOPS_DB_USERS"):
            try:
                values["users"] = json.loads(env["FINOPS_DB_USERS"])
            except ValueError as exc:
                raise InvalidInput("bad settings", [FieldError("FINOPS_DB_USERS", f"not JSON: {exc}")]) from exc
        if env.get("PORT"):
            values["port"] = env["PORT"]
        for var, key in (("FINOPS_REJECTS_RETENTION_DAYS", "rejects_retention_days"),
                         ("FINOPS_LEDGER_RETENTION_DAYS", "ledger_retention_days")):
            if env.get(var):
                values[key] = env[var]
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            raise InvalidInput("bad settings", field_errors(exc)) from exc
        if settings.mode == "cratedb" and not settings.db_url:
            raise InvalidInput("bad settings", [FieldError("FINOPS_DB_URL", "required when FINOPS_DB_MODE=cratedb")])
        return settings

    @property
    def embedded(self) -> bool:
        return self.mode == "embedded"

    def sql_url(self) -> str:
        """Where SQL goes: CrateDB, or this very process (its /_sql) in embedded mode."""
        return self.db_url if not self.embedded else f"http://127.0.0.1:{self.port}"


def _default_path(env: Mapping[str, str]) -> str:
    state = env.get("FINOPS_STATE_DIR")
    return os.path.join(state, "db", "finops.duckdb") if state else ":memory:"
