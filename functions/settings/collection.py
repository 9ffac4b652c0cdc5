"""Settings of the exporter and the scraper (collecting cost data from APIs into the database)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from functions.settings import CrSource, DbHandlerClient, EventSource


class CollectionSettings(CrSource, DbHandlerClient, EventSource):
    """Shared by the exporter and the scraper."""

    snapshot_store: Literal["file", "database"] = Field(default="file", alias="FINOPS_SNAPSHOT_STORE", description="Exporter snapshots: files under the state dir (local) or the database (cluster).")
    snapshot_db_url: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_URL", description="CrateDB URL for database-backed snapshots.")
    snapshot_db_user: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_USER", description="Database user for snapshots.")
    snapshot_db_password: str = Field(default="", alias="FINOPS_SNAPSHOT_DB_PASSWORD", description="Database password for snapshots (from a Secret).")
    exporter_url: str = Field(default="http://exporter.finops.svc.cluster.local", alias="FINOPS_EXPORTER_URL", description="Base URL of the exporter function (the scraper reads snapshots there).")
    upload_batch_rows: int = Field(default=50_000, alias="FINOPS_UPLOAD_BATCH_ROWS", ge=1, description="Rows per upload part (Arrow bulk path).")
    upload_batch_rows_json: int = Field(default=1000, alias="FINOPS_UPLOAD_BATCH_ROWS_JSON", ge=1, description="Rows per upload part when the JSON records path is forced.")
    upload_format: Literal["arrow", "json"] = Field(default="arrow", alias="FINOPS_UPLOAD_FORMAT", description="Upload body: Arrow IPC (bulk) or Krateo JSON records.")
    upload_retries: int = Field(default=5, alias="FINOPS_UPLOAD_RETRIES", ge=0, description="Retries of one failed upload part before the cycle answers 503 (and is retried whole).")
    export_max_bytes: int = Field(default=2 << 30, alias="FINOPS_EXPORT_MAX_BYTES", ge=1, description="Largest payload one export cycle reads, in bytes, counted as received (after HTTP content decoding) and again after gunzip, over all pages; beyond it the cycle fails (Ready=False) and the last good snapshot is kept. A 1,000,000-row FOCUS CSV is about 0.85 GB.")
    export_max_rows: int = Field(default=2_000_000, alias="FINOPS_EXPORT_MAX_ROWS", ge=1, description="Most rows one export cycle takes from its API, over all pages; beyond it the cycle fails (Ready=False) and the last good snapshot is kept.")
    export_deadline_s: float = Field(default=540.0, alias="FINOPS_EXPORT_DEADLINE_S", gt=0, description="Seconds one export cycle may spend fetching its API (all pages, retries included), on top of the 120 s timeout of every connect and read; keep it under the Knative Service's timeoutSeconds (600).")
    outbound_allow_link_local: str = Field(default="", alias="FINOPS_OUTBOUND_ALLOW_LINK_LOCAL", description="host[:port] entries (exact, comma separated) that outbound calls may reach although they are, or resolve to, link-local or cloud metadata addresses (169.254.0.0/16, fe80::/10, 100.100.100.200, fd00:ec2::254); empty = none, whatever a Secret, a redirect or a next-page link names.")


@lru_cache(maxsize=1)
def collection_settings() -> CollectionSettings:
    return CollectionSettings.from_env()
