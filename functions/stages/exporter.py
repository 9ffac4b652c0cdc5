"""Exporter: poll one API, convert its payload, keep the result as a durable columnar snapshot.

Trigger:     PingSource tick or `io.finops.cr.applied` for an ExporterScraperConfig (POST CloudEvent; a
             scraper-only one has nothing to export);
             GET /metrics/<namespace>/<name> to read the snapshot.
Input:       the ExporterScraperConfig and its endpoint Secret (read through a ResourceReader).
Output:      a new snapshot (sample table, Arrow IPC) and the `io.finops.export.completed` event;
             the snapshot as Prometheus text (streamed) or, negotiated, as Arrow IPC.
Side effects: one fetch of the API (all pages); replaces the config's snapshot atomically.
Limits:      FINOPS_EXPORT_MAX_BYTES (received, and again after gunzip), FINOPS_EXPORT_MAX_ROWS and
             FINOPS_EXPORT_DEADLINE_S per cycle; beyond one the cycle fails (InvalidInput naming it, or
             Unavailable for the deadline) before the snapshot is swapped. No call reaches a link-local or
             cloud metadata address (FINOPS_OUTBOUND_ALLOW_LINK_LOCAL lists exceptions).
Idempotency: keyed by the config: a re-run replaces the snapshot; a failed cycle keeps the last good one.
Status:      functions.main writes the outcome into the CR (Ready/Synced, `status.lastExport`); bad input
             (InvalidInput) is a failed cycle: Ready=False and `io.finops.export.failed`, answered 200.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from pydantic import Field, ValidationError

from functions.clients import endpoint as endpoint_client
from functions.clients import kube
from functions.clients.kube import ResourceReader
from functions.clients.outbound import OutboundPolicy
from functions.codecs import exposition, samples, sources
from functions.codecs._streams import ByteBudget
from functions.errors import FieldError, InvalidInput, field_errors
from functions.logs import get_logger
from functions.models.crs import ExporterConfigSpec, ExporterScraperConfig, ExporterScraperConfigSpec
from functions.models.k8s import now_rfc3339, rejected_summary
from functions.models.refs import ConfigRef
from functions.settings.collection import CollectionSettings, collection_settings
from functions.storage.snapshots import SnapshotStore

__all__ = ["handle", "load_config", "serve"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

ARROW_STREAM = "application/vnd.apache.arrow.stream"
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
MAX_BYTES_SETTING = "FINOPS_EXPORT_MAX_BYTES"
MAX_ROWS_SETTING = "FINOPS_EXPORT_MAX_ROWS"

log = get_logger("exporter")


@dataclass(frozen=True)
class ExportResult:
    """One export cycle: `rows` = rows received from the API, all kept in the snapshot; `unvalued` of
    them have no usable value (NULL or not a FOCUS number) and are left out of the exposition text.

    Who reports rejected rows: with a scraper half, the database handler decides what is stored
    (a cost row without a BilledCost is rejected there, a resource or generic row is stored with a
    NULL value), so the scrape's outcome owns the `Degraded` condition and the `rejected` count; for
    an exporter-only config the snapshot is the end of the line, and the export owns both."""

    config: str
    metric_type: str
    rows: int
    bytes: int
    pages: int
    seconds: float
    unvalued: int = 0
    reasons: tuple[dict[str, Any], ...] = ()
    final: bool = False
    """True for an exporter-only config: nothing downstream counts these rows again."""
    skipped_columns: tuple[str, ...] = ()

    def event_data(self) -> dict[str, Any]:
        data = {"config": self.config, "metricType": self.metric_type, "rows": self.rows, "pages": self.pages,
                "received": self.rows, "unvalued": self.unvalued, "reasons": list(self.reasons)}
        if self.skipped_columns:
            data["skippedColumns"] = list(self.skipped_columns)
        return data | ({"rejected": self.unvalued} if self.final else {})

    def status(self) -> tuple[str, dict[str, Any]]:
        """The Ready=True message and the `status.lastExport` the CR gets after this cycle."""
        now = now_rfc3339()
        unvalued = f", {self.unvalued} without a usable value" if self.unvalued else ""
        skipped = f", x_ columns left out (not label names): {', '.join(self.skipped_columns)}" if self.skipped_columns else ""
        return (f"exported {self.rows} rows ({self.pages} page(s)){unvalued}{skipped} at {now}",
                {"lastExport": {"time": now, "rows": self.rows, "pages": self.pages, "metricType": self.metric_type,
                                "unvalued": self.unvalued}})

    @property
    def owns_degraded(self) -> bool:
        return self.final

    def degraded(self) -> str | None:
        """The Degraded condition's message when rows were kept out of the snapshot's text, else None."""
        return rejected_summary(self.unvalued, self.rows, self.reasons)


def handle(ref: ConfigRef, reader: ResourceReader, store: SnapshotStore, workdir: Path | None = None,
           settings: CollectionSettings | None = None) -> ExportResult | None:
    """Run one export cycle; None when the config no longer exists (nothing to do, not an error).
    `settings` gives the limits (default: the process's, from the environment)."""
    started = time.monotonic()
    limits = settings or collection_settings()
    esc = load_config(ref, reader)
    if esc is None:
        log.info("config gone, nothing to export", extra={"config": str(ref)})
        return None
    spec = esc.spec.exporter_config
    ep = _endpoint(reader, spec.api.endpoint_ref, esc.metadata.namespace)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir) as dest:
        fetched = endpoint_client.fetch(
            spec.api, ep, spec.additional_variables, dest=dest,
            policy=OutboundPolicy.guard_only(limits.outbound_allow_link_local),
            budget=ByteBudget(limits.export_max_bytes, MAX_BYTES_SETTING, "received"), deadline_s=limits.export_deadline_s)
        decompressed = ByteBudget(limits.export_max_bytes, MAX_BYTES_SETTING, "decompressed")
        source_batches = _capped(_parse_pages(_pages(dest, fetched), spec.api.path, esc, decompressed), limits.export_max_rows)
        stats = samples.SampleStats()
        sample_batches = samples.to_samples(source_batches, spec.metric_type, spec.generic, str(ref), stats=stats)
        meta = {"finops.metric_type": spec.metric_type, "finops.created": datetime.now(UTC).isoformat()}
        info = store.write(str(ref), sample_batches, meta)  # swapped in only when every batch arrived
    result = ExportResult(str(ref), spec.metric_type, info.rows, info.bytes, len(fetched.pages), time.monotonic() - started,
                          stats.rejected, tuple(stats.reasons), esc.spec.scraper_config is None, tuple(stats.skipped_columns))
    if result.unvalued:
        log.warning("rows without a usable value", extra={"config": str(ref), "unvalued": result.unvalued,
                                                          "received": result.rows, "first": list(result.reasons)})
    if result.skipped_columns:
        log.warning("x_ columns left out: not label names", extra={"config": str(ref), "columns": list(result.skipped_columns)})
    log.info("snapshot stored", extra=result.event_data() | {"seconds": round(result.seconds, 3)})
    return result


def serve(ref: ConfigRef, accept: str, store: SnapshotStore) -> tuple[str, Iterator[bytes] | None]:
    """The snapshot as Arrow IPC when the client accepts it, else Prometheus text; None if never exported."""
    if ARROW_STREAM in (accept or ""):
        return ARROW_STREAM, store.read_ipc(str(ref))
    batches = store.read(str(ref))
    return EXPOSITION, None if batches is None else exposition.render(batches)


class _ExportingSpec(ExporterScraperConfigSpec):
    exporter_config: ExporterConfigSpec = Field(description="What to poll and how to convert it.")


class ExportingConfig(ExporterScraperConfig):
    """An ExporterScraperConfig that has its exporter half, so an export cycle needs no None checks."""

    spec: _ExportingSpec = Field(description="Exporter settings, and the scraper's if any.")


def load_config(ref: ConfigRef, reader: ResourceReader) -> ExportingConfig | None:
    """The config to export; None when it is gone or scraper-only (its scraper has its own timer)."""
    body = reader.get(ExporterScraperConfig.KIND, ref.namespace, ref.name)
    if body is None:
        return None
    try:
        esc = ExporterScraperConfig.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(f"{ref} is invalid", field_errors(exc)) from exc
    if esc.spec.exporter_config is None:
        log.info("scraper-only config, nothing to export", extra={"config": str(ref)})
        return None
    return ExportingConfig.model_validate(body)


def _endpoint(reader: ResourceReader, ref: Any, namespace: str) -> endpoint_client.Endpoint:
    if ref is None:
        return endpoint_client.Endpoint.in_cluster()
    return kube.endpoint_from_secret(reader, ref.namespace or namespace, ref.name, "spec.exporterConfig.api.endpointRef")


def _pages(dest: BinaryIO, fetched: endpoint_client.FetchResult) -> Iterator[tuple[BinaryIO, str]]:
    """One readable stream per fetched page: the file itself for one page (streamed), bytes otherwise."""
    dest.flush()
    if len(fetched.pages) <= 1:
        dest.seek(0)
        ctype = fetched.pages[0][2] if fetched.pages else fetched.content_type
        yield dest, ctype
        return
    for offset, length, ctype in fetched.pages:
        dest.seek(offset)
        yield io.BytesIO(dest.read(length)), ctype


def _parse_pages(pages: Iterator[tuple[BinaryIO, str]], path: str, esc: ExportingConfig,
                 budget: ByteBudget) -> Iterator[pa.RecordBatch]:
    spec = esc.spec.exporter_config
    for body, ctype in pages:
        yield from sources.read_payload(
            body, ctype, path, spec.metric_type, generic=spec.generic, additional_variables=spec.additional_variables,
            budget=budget,
        )


def _capped(batches: Iterator[pa.RecordBatch], max_rows: int) -> Iterator[pa.RecordBatch]:
    """The batches, refused (InvalidInput naming the setting) once they hold more than `max_rows` rows."""
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        if rows > max_rows:
            raise InvalidInput(
                f"the API sent more than {max_rows} rows ({MAX_ROWS_SETTING}); the cycle is refused and the last "
                "good snapshot kept", [FieldError(MAX_ROWS_SETTING, f"more than {max_rows} rows")])
        yield batch
