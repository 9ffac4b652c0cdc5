"""Focus ingest: a FocusConfig change becomes (or removes) its one FOCUS row, written at once.

Trigger:     `io.finops.cr.applied` / `io.finops.cr.deleted` with extension kind=FocusConfig (the kopf
             bridge in a cluster, the local CR store on a laptop), data = the CR.
Input:       the CR (re-read from the reader on apply, so a late or repeated event writes the newest
             spec, and an event for a CR that is gone writes nothing), its DatabaseConfig and Secret.
Output:      one row in `spec.scraperConfig.tableName` (the cost table, created if missing), tagged
             `finops_source = FocusConfig/<uid>`; an answer carrying Krateo-style status conditions.
Side effects: SQL through the `crate` client: the embedded `/_sql` of the database handler, or
             CrateDB (FINOPS_FOCUS_DB_URL), as the DatabaseConfig's user.
Idempotency: the CR's rows are found by uid in every table that has `finops_source`, deleted and the
             current row inserted in one transaction (embedded engine; on CrateDB the same steps in
             order, so a retry converges). An update therefore replaces the row even when key fields or
             the table change, and two CRs never touch each other's rows.

Krateo routes FocusConfigs through an ExporterScraperConfig whose exporter lists them from the API
server every pollingInterval, and never removes the row of a deleted CR; here the row follows the
CR within one event delivery, and a delete removes it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from functions.clients import kube
from functions.clients.db import Database, connect
from functions.clients.kube import ResourceReader
from functions.codecs import focus_values, focusconfig_json
from functions.errors import FieldError, FinopsError, InvalidInput, Unauthorized, field_errors
from functions.events import CR_APPLIED, CR_DELETED
from functions.logs import get_logger
from functions.models.crs import ScraperConfigSpec
from functions.models.focus import FocusConfig
from functions.models.k8s import ObjectRef
from functions.models.notebooks import ReconcileFailed, conditions
from functions.models.refs import ConfigRef
from functions.settings.focus import FocusSettings
from functions.storage import ledger, tables
from functions.storage.dialect import quote_ident

__all__ = ["handle", "row"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

log = get_logger("focus_ingest")

Databases = MutableMapping[tuple[str, str, str], Database]
STAGING_SUFFIX = "__finops_staging"


@dataclass(frozen=True)
class FocusReconciled:
    """What one event did: stored, deleted or skipped (nothing to do), and where."""

    action: str
    resource: str
    source: str
    table: str = ""
    rows: int = 0
    message: str = ""

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.action, "resource": self.resource, "source": self.source,
                               "table": self.table, "rows": self.rows, "message": self.message}
        if self.action != "deleted":
            out["status"] = {"conditions": conditions(True, "ReconcileSuccess", self.message)}
        return out


def handle(event_type: str, subject: str | None, data: Any, reader: ResourceReader,
           settings: FocusSettings, databases: Databases) -> FocusReconciled:
    """One CR event; every FinopsError comes back as ReconcileFailed carrying the CR's conditions."""
    ref = _ref(subject, data)
    try:
        if event_type == CR_DELETED:
            return _deleted(ref, data, reader, settings, databases)
        if event_type == CR_APPLIED:
            return _applied(ref, data, reader, settings, databases)
        raise InvalidInput(f"focus ingest takes {CR_APPLIED} or {CR_DELETED}", [FieldError("type", f"got {event_type!r}")])
    except ReconcileFailed:
        raise
    except FinopsError as exc:
        raise ReconcileFailed(exc, str(ref)) from exc


def _ref(subject: str | None, data: Any) -> ConfigRef:
    ref = ConfigRef.from_event(subject, data)
    if ref.kind != FocusConfig.KIND:
        raise InvalidInput(f"focus ingest handles FocusConfig, not {ref.kind}", [FieldError("kind", "expected FocusConfig")])
    return ref


def _uid(cr: Any) -> str:
    meta = cr.get("metadata") if isinstance(cr, dict) else None
    uid = meta.get("uid") if isinstance(meta, dict) else None
    if not isinstance(uid, str) or not uid:
        raise InvalidInput("the FocusConfig has no metadata.uid", [FieldError("metadata.uid", "required: rows are tracked by uid")])
    return uid


def _applied(ref: ConfigRef, data: Any, reader: ResourceReader, settings: FocusSettings, databases: Databases) -> FocusReconciled:
    uid = _uid(data)
    source = f"{FocusConfig.KIND}/{uid}"
    current = reader.get(ref.kind, ref.namespace, ref.name)
    if current is None or _uid(current) != uid:
        return FocusReconciled("skipped", str(ref), source, message="the CR is gone or was re-created: its own events handle it")
    try:
        cfg = FocusConfig.model_validate(current)
    except ValidationError as exc:
        error = InvalidInput(f"{ref} is invalid", field_errors(exc))
        _account_rejected(current, source, error, reader, settings, databases)
        raise error from exc
    sc = cfg.spec.scraper_config
    if sc is None:
        return FocusReconciled("skipped", str(ref), source, message="spec.scraperConfig is empty: no table to write to")
    table = tables.valid_table_name(sc.table_name)
    db = _database(reader, sc.scraper_database_config_ref, settings, databases)
    columns, values = row(cfg, source)
    db.execute(tables.table_ddl(table, "cost"))
    stmts = _delete_everywhere(db, source)
    marks = ", ".join("?" for _ in columns)
    names = ", ".join(quote_ident(c) for c in columns)
    stmts.append((f"INSERT INTO {quote_ident(table)} ({names}) VALUES ({marks})", values))
    stmts.append((f"REFRESH TABLE {quote_ident(table)}", None))
    db.run_atomically(stmts)
    _account(db, table, source, _run(current), dict(zip(columns, values, strict=True)))
    log.info("focus row stored", extra={"resource": str(ref), "source": source, "table": table})
    return FocusReconciled("stored", str(ref), source, table, 1, f"stored in table {table}")


def _deleted(ref: ConfigRef, data: Any, reader: ResourceReader, settings: FocusSettings, databases: Databases) -> FocusReconciled:
    uid = _uid(data)
    source = f"{FocusConfig.KIND}/{uid}"
    raw = ((data.get("spec") or {}).get("scraperConfig") if isinstance(data, dict) else None)
    if not raw:
        return FocusReconciled("skipped", str(ref), source, message="spec.scraperConfig was empty: no row was stored")
    try:
        sc = ScraperConfigSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"{ref} is invalid", field_errors(exc, "spec.scraperConfig")) from exc
    db = _database(reader, sc.scraper_database_config_ref, settings, databases)
    stmts = _delete_everywhere(db, source)
    db.run_atomically(stmts)
    log.info("focus row deleted", extra={"resource": str(ref), "source": source, "tables": len(stmts)})
    return FocusReconciled("deleted", str(ref), source, sc.table_name.lower(), 0, "the CR's rows were deleted")


def row(cfg: FocusConfig, source: str, now: datetime | None = None) -> tuple[list[str], list[Any]]:
    """The cost-table columns and values of one FocusConfig (pure).

    Values go through the exporter's FocusConfig-list conversion (quantities as plain decimals,
    times as RFC 3339 UTC), then take the column's type: DOUBLE as float, `tags` as an object
    (keys without '.', the first of a repeated key wins, as the upload path does).
    """
    doc = {"items": [{"spec": {"focusSpec": cfg.focus_values()}}]}
    batch = focusconfig_json.to_batch([doc])
    types = tables.cost_columns()
    columns: list[str] = []
    values: list[Any] = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        col = name.lower()
        text = column[0].as_py()
        columns.append(col)
        if text is not None and text.strip() in focus_values.NULL_LITERALS:
            text = None  # the FOCUS convention holds for a CR too: NULL, null and empty are SQL NULL
        if types[col] == tables.DOUBLE:
            values.append(float(text) if text else None)
        elif types[col] == tables.OBJECT:
            values.append(_tags(cfg))
        else:
            values.append(text)
    stamp = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    generation = cfg.metadata.generation
    columns += ["finops_source", "finops_run", "finops_ingested_at"]
    values += [source, f"generation-{generation}" if generation is not None else "", stamp]
    return columns, values


def _run(cr: Any) -> str:
    """The ledger's run of one CR version: its uid and generation (re-deliveries of it replace it)."""
    meta = cr.get("metadata") or {}
    return f"{meta.get('uid')}-g{meta.get('generation') or 0}"


def _account(db: Database, table: str, source: str, run: str, stored: dict[str, Any]) -> None:
    """The ledger entry of a stored FocusConfig row: one row received, one stored, as one committed
    run (the commit part, so `finops rejects`, the metrics and "the last run" see FocusConfigs too)."""
    period = focus_values.timestamps(pa.array([stored.get("billingperiodstart")], pa.string()))[0].cast(pa.int64())[0].as_py()
    currency, cost = stored.get("billingcurrency"), float(stored.get("billedcost") or 0.0)
    ledger.record(db, ledger.PartKey(table, source, run, ledger.COMMIT_PART), "focus_ingest", [],
                  [[period, currency, 1, cost, 0, 0.0]], [[period, currency, 1, cost]])


def _account_rejected(cr: Any, source: str, error: InvalidInput, reader: ResourceReader, settings: FocusSettings,
                      databases: Databases) -> None:
    """An invalid FocusConfig is a rejected row too: kept in finops_rejects with every reason and the
    CR's spec as the raw row, when its scraperConfig still names a table and a database (else the
    CR's conditions are the only place it can be reported). Best effort: the answer is the 400."""
    try:
        sc = ScraperConfigSpec.model_validate((cr.get("spec") or {}).get("scraperConfig") or {})
        table = tables.valid_table_name(sc.table_name)
        db = _database(reader, sc.scraper_database_config_ref, settings, databases)
        spec = (cr.get("spec") or {}).get("focusSpec") or {}
        rejects = [ledger.Reject(1, e.loc, e.msg, None, spec if isinstance(spec, dict) else {"focusSpec": spec})
                   for e in error.errors] or [ledger.Reject(1, "", error.message, None, None)]
        ledger.record(db, ledger.PartKey(table, source, _run(cr), ledger.COMMIT_PART), "focus_ingest", rejects,
                      [[None, None, 1, 0.0, 1, 0.0]], [])
    except (ValidationError, FinopsError) as exc:
        log.warning("rejected FocusConfig not recorded in finops_rejects", extra={"source": source, "error": str(exc)})


def _tags(cfg: FocusConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in cfg.focus_values().get("tags", []):
        key = str(tag["key"]).strip().replace(".", "")
        if key and key not in out:
            out[key] = str(tag["value"])
    return out


def _delete_everywhere(db: Database, source: str) -> list[tuple[str, list[Any] | None]]:
    """DELETEs of `source`'s rows from every table that has finops_source (staging tables excepted)."""
    found = db.execute(
        "SELECT DISTINCT table_name FROM information_schema.columns WHERE column_name = 'finops_source'"
        " AND table_schema = 'doc' ORDER BY table_name"
    )
    keep = (ledger.LEDGER_TABLE, ledger.REJECTS_TABLE)  # the accounting of past versions is history, not rows
    names = [str(r[0]) for r in found.rows if not str(r[0]).endswith(STAGING_SUFFIX) and str(r[0]) not in keep]
    return [(f"DELETE FROM {quote_ident(n)} WHERE finops_source = ?", [source]) for n in names]


def _database(reader: ResourceReader, ref: ObjectRef, settings: FocusSettings, databases: Databases) -> Database:
    """A connected client as the DatabaseConfig's user (re-read per event, as the scraper does)."""
    user, password = database_credentials(reader, ref)
    key = (settings.sql_url, user, password)
    db = databases.get(key)
    if db is None:
        try:
            db = connect(settings.sql_url, user, password)
        except Unauthorized as exc:
            raise InvalidInput(f"the database refused DatabaseConfig {ref.namespace}/{ref.name}: {exc}",
                               [FieldError("spec.scraperConfig.scraperDatabaseConfigRef", "credentials refused")]) from exc
        databases[key] = db
    return db


def database_credentials(reader: ResourceReader, ref: ObjectRef) -> tuple[str, str]:
    """(user, password) of a DatabaseConfig and its password Secret; InvalidInput naming what is missing."""
    return kube.database_credentials(reader, ref.namespace, ref.name, "spec.scraperConfig.scraperDatabaseConfigRef")
