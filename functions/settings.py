"""Typed settings per function, read from the environment once and passed down as arguments.

The README's table of variables is generated from these models (`python -m functions.settings_doc`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field


class _EnvSettings(BaseModel):
    """Fields map to upper-case env vars named in each field's `alias`."""

    model_config = {"populate_by_name": True, "frozen": True}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {
            name: env[f.alias]
            for name, f in cls.model_fields.items()
            if f.alias and f.alias in env and env[f.alias] != ""
        }
        return cls.model_validate(values)


class CollectionSettings(_EnvSettings):
    """Shared by the exporter and the scraper."""

    state_dir: Path = Field(default=Path(".state"), alias="FINOPS_STATE_DIR", description="Local state directory (snapshots, CR store, embedded database).")
    kube: Literal["local", "cluster"] = Field(default="local", alias="FINOPS_KUBE", description="Where CRs and Secrets are read: the local CR store or the Kubernetes API.")
    snapshot_store: Literal["file", "database"] = Field(default="file", alias="FINOPS_SNAPSHOT_STORE", description="Exporter snapshots: files under the state dir (local) or the database (cluster).")
    snapshot_db_url: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_URL", description="CrateDB URL for database-backed snapshots.")
    snapshot_db_user: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_USER", description="Database user for snapshots.")
    snapshot_db_password: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_PASSWORD", description="Database password for snapshots (from a Secret).")
    exporter_url: str = Field(default="http://exporter.finops.svc.cluster.local", alias="FINOPS_EXPORTER_URL", description="Base URL of the exporter function (the scraper reads snapshots there).")
    dbhandler_url: str = Field(default="http://dbhandler.finops.svc.cluster.local", alias="FINOPS_DBHANDLER_URL", description="Base URL of the database-handler function (/upload).")
    upload_batch_rows: int = Field(default=50_000, alias="FINOPS_UPLOAD_BATCH_ROWS", ge=1, description="Rows per upload part (Arrow bulk path).")
    upload_batch_rows_json: int = Field(default=1000, alias="FINOPS_UPLOAD_BATCH_ROWS_JSON", ge=1, description="Rows per upload part when the JSON records path is forced.")
    upload_format: Literal["arrow", "json"] = Field(default="arrow", alias="FINOPS_UPLOAD_FORMAT", description="Upload body: Arrow IPC (bulk) or Krateo JSON records.")
    upload_retries: int = Field(default=5, alias="FINOPS_UPLOAD_RETRIES", ge=0, description="Retries of one failed upload part before the cycle answers 503 (and is retried whole).")
    export_max_bytes: int = Field(default=2 << 30, alias="FINOPS_EXPORT_MAX_BYTES", ge=1, description="Largest payload one export cycle reads, in bytes, counted as received (after HTTP content decoding) and again after gunzip, over all pages; beyond it the cycle fails (Ready=False) and the last good snapshot is kept. A 1,000,000-row FOCUS CSV is about 0.85 GB.")
    export_max_rows: int = Field(default=2_000_000, alias="FINOPS_EXPORT_MAX_ROWS", ge=1, description="Most rows one export cycle takes from its API, over all pages; beyond it the cycle fails (Ready=False) and the last good snapshot is kept.")
    export_deadline_s: float = Field(default=540.0, alias="FINOPS_EXPORT_DEADLINE_S", gt=0, description="Seconds one export cycle may spend fetching its API (all pages, retries included), on top of the 120 s timeout of every connect and read; keep it under the Knative Service's timeoutSeconds (600).")
    outbound_allow_link_local: str = Field(default="", alias="FINOPS_OUTBOUND_ALLOW_LINK_LOCAL", description="host[:port] entries (exact, comma separated) that outbound calls may reach although they are, or resolve to, link-local or cloud metadata addresses (169.254.0.0/16, fe80::/10, 100.100.100.200, fd00:ec2::254); empty = none, whatever a Secret, a redirect or a next-page link names.")
    source_service: str = Field(default="", alias="K_SERVICE", description="Knative service name (event source attribute).")


@lru_cache(maxsize=1)
def collection_settings() -> CollectionSettings:
    return CollectionSettings.from_env()


class DatabaseClientSettings(_EnvSettings):
    """How every `crate` client of a process talks to its database (functions.clients.db.Database)."""

    plain_cratedb: bool = Field(default=False, alias="FINOPS_DB_PLAIN_CRATEDB", description="Send only plain CrateDB SQL, even to the embedded engine: its `GET /` banner is ignored, so callers take their CrateDB path (statements one by one, bulk_args, no payloads by reference). For checking CrateDB mode's SQL without a CrateDB server; off in production.")


def database_client_settings() -> DatabaseClientSettings:
    """Read on every new connection, not cached: cheap, and a test can switch it per process or per test."""
    return DatabaseClientSettings.from_env()
