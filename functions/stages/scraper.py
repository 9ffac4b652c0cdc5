"""Scraper: read a snapshot or any Prometheus endpoint and upload it to the database handler.

Trigger:     `io.finops.export.completed` (an ExporterScraperConfig; an exporter-only one has nothing to
             scrape) or a PingSource tick for a ScraperConfig or a scraper-only ExporterScraperConfig.
Input:       the config, its DatabaseConfig and password Secret, the endpoint to read.
Output:      upload parts committed as one run; the `io.finops.upload.completed` event.
Side effects: reads the exporter (Arrow IPC, negotiated) or a foreign endpoint (exposition text);
             POSTs parts to /upload with Basic auth.
Idempotency: run id derived from the triggering event id: a redelivered event re-sends the same
             parts (staged per part) and the same commit, which replaces the (source, period) slices.
Status:      functions.main writes the outcome into the CR (Ready/Synced, `status.lastUpload`); bad input
             (InvalidInput) is a failed cycle: Ready=False and `io.finops.scrape.failed`, answered 200.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from functions.clients import callers, kube, peers
from functions.clients import endpoint as endpoint_client
from functions.clients.kube import ResourceReader
from functions.codecs import exposition, focus_conformance, records
from functions.errors import FieldError, FinopsError, InvalidInput, field_errors
from functions.logs import get_logger
from functions.models.crs import API, ExporterScraperConfig, Generic, ScraperConfig
from functions.models.k8s import ObjectRef, now_rfc3339, rejected_summary
from functions.models.refs import ConfigRef
from functions.settings.collection import CollectionSettings

__all__ = ["handle", "load_plan"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ACCEPT = f"{ARROW_STREAM}, text/plain;version=0.0.4;q=0.5, */*;q=0.1"

log = get_logger("scraper")
FIRST_REASONS = 5


@dataclass(frozen=True)
class ScrapePlan:
    """What one config asks the scraper to do, whichever CR kind it came from."""

    source: str
    namespace: str
    table: str
    metric_type: str
    generic: Generic | None
    database: ObjectRef
    api: API | None  # None: read our own exporter's snapshot


@dataclass
class Tally:
    """What the handler answered for a run's parts: rows received, stored, rejected, first reasons."""

    received: int = 0
    stored: int = 0
    rejected: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)
    findings: list[focus_conformance.Finding] = field(default_factory=list)

    def check(self, batch: pa.RecordBatch) -> None:
        """FOCUS conformance of the records about to be sent (cost only): reported, never blocking."""
        self.findings = focus_conformance.merge(self.findings, focus_conformance.check(pa.Table.from_batches([batch])))

    def add(self, sent: int, answer: dict[str, Any]) -> None:
        self.received += sent
        self.stored += int(answer.get("records_processed", 0))
        self.rejected += int(answer.get("records_rejected", 0))
        room = FIRST_REASONS - len(self.reasons)
        if room > 0:
            self.reasons += [dict(e) for e in (answer.get("errors") or [])[:room] if isinstance(e, dict)]


@dataclass(frozen=True)
class ScrapeResult:
    """One run: `received` rows sent, `rows` stored, `rejected` kept in the handler's rejects table."""

    config: str
    table: str
    rows: int
    parts: int
    rejected: int
    bulk: bool
    seconds: float
    received: int = 0
    reasons: tuple[dict[str, Any], ...] = ()
    run: str = ""
    findings: dict[str, int] = field(default_factory=dict)

    def event_data(self) -> dict[str, Any]:
        return {"config": self.config, "table": self.table, "run": self.run, "rows": self.rows, "parts": self.parts,
                "received": self.received, "stored": self.rows, "rejected": self.rejected, "reasons": list(self.reasons),
                "findings": self.findings}

    def status(self) -> tuple[str, dict[str, Any]]:
        """The Ready=True message and the `status.lastUpload` the CR gets after this cycle."""
        now = now_rfc3339()
        rejected = f", {self.rejected} rejected (see finops rejects {self.config})" if self.rejected else ""
        return (f"uploaded {self.rows} of {self.received} rows to {self.table} at {now}{rejected}",
                {"lastUpload": {"time": now, "table": self.table, "run": self.run, "rows": self.rows, "parts": self.parts,
                                "received": self.received, "rejected": self.rejected}})

    owns_degraded = True  # the handler's answer is what was stored

    def degraded(self) -> str | None:
        """The Degraded condition's message when the handler rejected rows, else None."""
        return rejected_summary(self.rejected, self.received, self.reasons)


def handle(ref: ConfigRef, event_id: str, reader: ResourceReader, settings: CollectionSettings) -> ScrapeResult | None:
    """One scrape-and-upload cycle; None when the config is gone (nothing to do)."""
    started = time.monotonic()
    plan = load_plan(ref, reader)
    if plan is None:
        log.info("config gone, nothing to scrape", extra={"config": str(ref)})
        return None
    target = _upload_target(reader, plan, settings)
    run = hashlib.sha256(f"{plan.source}|{event_id}".encode()).hexdigest()[:32]
    with tempfile.TemporaryFile() as tmp:
        bulk, batches = _read(plan, ref, tmp, reader, settings)
        if batches is None:
            log.info("no snapshot yet, nothing to scrape", extra={"config": str(ref)})
            return None
        stamp = int(time.time())
        recs = (records.samples_to_records(b, stamp) for b in _only_family(batches, plan))
        tally, parts = _upload(plan, run, recs, target, settings)
        _report_findings(plan, run, tally, target, settings)
    counts = {sev: sum(1 for f in tally.findings if f.severity == sev) for sev in ("error", "warning")}
    result = ScrapeResult(str(ref), plan.table, tally.stored, parts, tally.rejected, bulk, time.monotonic() - started,
                          tally.received, tuple(tally.reasons), run, counts if plan.metric_type == "cost" else {})
    if result.rejected:
        log.warning("rows rejected", extra={"config": str(ref), "table": plan.table, "run": run, "rejected": result.rejected,
                                            "received": result.received, "first": list(result.reasons)})
    log.info("upload committed", extra=result.event_data() | {"bulk": bulk, "seconds": round(result.seconds, 3)})
    return result


def load_plan(ref: ConfigRef, reader: ResourceReader) -> ScrapePlan | None:
    """What to scrape; None when the config is gone or exporter-only (nothing to store: any
    Prometheus scrapes its GET /metrics/<ns>/<name>). A scraper-only ExporterScraperConfig reads
    its own `scraperConfig.api`, exactly like a ScraperConfig."""
    body = reader.get(ref.kind, ref.namespace, ref.name)
    if body is None:
        return None
    try:
        if ref.kind == ExporterScraperConfig.KIND:
            esc = ExporterScraperConfig.model_validate(body)
            sc, ex = esc.spec.scraper_config, esc.spec.exporter_config
            if sc is None:
                log.info("exporter-only config, nothing to scrape", extra={"config": str(ref)})
                return None
            if ex is not None:
                user_api = sc.api if sc.api is not None and sc.api.endpoint_ref is not None else None
                return ScrapePlan(str(ref), ref.namespace, sc.table_name, ex.metric_type, ex.generic, sc.scraper_database_config_ref, user_api)
        elif ref.kind == ScraperConfig.KIND:
            sc = ScraperConfig.model_validate(body).spec
        else:
            raise InvalidInput(f"the scraper does not handle {ref.kind}", [FieldError("kind", "expected ExporterScraperConfig or ScraperConfig")])
    except ValidationError as exc:
        raise InvalidInput(f"{ref} is invalid", field_errors(exc)) from exc
    api = sc.api or API(path="/metrics")
    return ScrapePlan(str(ref), ref.namespace, sc.table_name, sc.metric_type, sc.generic, sc.scraper_database_config_ref, api)


def _upload_target(reader: ResourceReader, plan: ScrapePlan, settings: CollectionSettings) -> peers.UploadTarget:
    """DatabaseConfig + Secret are re-read every cycle, as Krateo does."""
    ref = plan.database
    user, password = kube.database_credentials(reader, ref.namespace, ref.name, "scraperDatabaseConfigRef")
    return peers.UploadTarget(settings.dbhandler_url, user, password)


def _read(plan: ScrapePlan, ref: ConfigRef, tmp: BinaryIO, reader: ResourceReader, settings: CollectionSettings) -> tuple[bool, Iterator[pa.RecordBatch] | None]:
    """Arrow IPC from our exporter (negotiated); exposition text from anything else."""
    if plan.api is None:
        url = f"{settings.exporter_url.rstrip('/')}/metrics/{ref.namespace}/{ref.name}"
        got = peers.download(url, tmp, ACCEPT, headers=callers.outbound_headers())  # our exporter checks it
        if got.headers.get("x-finops-snapshot") == "none":
            return False, None
        ctype = got.content_type
    else:
        secret_ref = plan.api.endpoint_ref
        ep = (kube.endpoint_from_secret(reader, secret_ref.namespace, secret_ref.name, "api.endpointRef") if secret_ref
              else endpoint_client.Endpoint.in_cluster())
        api = plan.api.model_copy(update={"headers": [*plan.api.headers, f"Accept: {ACCEPT}"]})
        fetched = endpoint_client.fetch(api, ep, {}, dest=tmp)
        tmp.seek(0)
        ctype = fetched.content_type
    if ARROW_STREAM in ctype:
        return True, records.read_ipc(tmp)
    return False, exposition.parse(_chunks(tmp))


def _chunks(fh: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while piece := fh.read(size):
        yield piece


def _only_family(batches: Iterable[pa.RecordBatch], plan: ScrapePlan) -> Iterator[pa.RecordBatch]:
    """Generic configs upload only their metric family (as Krateo's finops-prometheus-scraper); others upload everything."""
    name = plan.generic.metric_name if plan.metric_type == "generic" and plan.generic else ""
    for batch in batches:
        if name:
            batch = batch.filter(pc.equal(batch.column("__name__"), name))
        if batch.num_rows:
            yield batch


def _upload(plan: ScrapePlan, run: str, recs: Iterable[pa.RecordBatch], target: peers.UploadTarget, settings: CollectionSettings) -> tuple[Tally, int]:
    """Send parts with one-part look-ahead so the last one carries final=true (an empty final if none)."""
    json_mode = settings.upload_format == "json"
    size = settings.upload_batch_rows_json if json_mode else settings.upload_batch_rows
    params = {"table": plan.table, "type": plan.metric_type, "source": plan.source, "run": run}
    if plan.metric_type == "generic" and plan.generic:
        params["value"] = str(plan.generic.value_column_index)
    tally = Tally()
    parts = 0
    pending: pa.RecordBatch | None = None
    with httpx.Client() as client:
        for batch in records.split(recs, size):
            if plan.metric_type == "cost":
                tally.check(batch)
            if pending is not None:
                tally.add(pending.num_rows, _send(client, target, params, parts, pending, False, json_mode, settings))
                parts += 1
            pending = batch
        if pending is None:
            final = params | {"part": str(parts), "final": "true"}
            peers.upload_part(target, final, b"[]", "application/json", settings.upload_retries, client=client)
            return tally, parts + 1
        tally.add(pending.num_rows, _send(client, target, params, parts, pending, True, json_mode, settings))
    return tally, parts + 1


def _report_findings(plan: ScrapePlan, run: str, tally: Tally, target: peers.UploadTarget,
                     settings: CollectionSettings) -> None:
    """Store the run's FOCUS conformance findings beside its ledger (`finops validate KIND/NS/NAME`).

    Checked here, on the records the scraper sends, rather than in the database handler: the handler
    is the shared bulk path, and the check (~0.1 s per 50k rows) would slow every upload. Findings
    report and never block: a handler that cannot take them is logged, and the run stays committed."""
    if plan.metric_type != "cost":
        return
    query = {"table": plan.table, "source": plan.source, "run": run}
    body = orjson.dumps([f.to_dict() for f in tally.findings])
    try:
        peers.upload_part(target, query, body, "application/json", settings.upload_retries, path="/upload/findings")
    except FinopsError as exc:
        log.warning("findings not stored", extra={"config": plan.source, "run": run, "error": str(exc)})


def _send(
    client: httpx.Client, target: peers.UploadTarget, params: dict[str, str], part: int, batch: pa.RecordBatch,
    final: bool, json_mode: bool, settings: CollectionSettings,
) -> dict[str, Any]:
    """POST one part; the handler's answer (records_processed, records_rejected, errors)."""
    query = params | {"part": str(part)} | ({"final": "true"} if final else {})
    if json_mode:
        body, ctype = orjson.dumps(records.to_json(pa.Table.from_batches([batch]))), "application/json"
    else:
        body, ctype = b"".join(records.write_ipc([batch])), ARROW_STREAM
    return peers.upload_part(target, query, body, ctype, settings.upload_retries, client=client)

