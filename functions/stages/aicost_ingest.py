"""The aicost function: ingest AI/ML cost events, price them, store each once, evaluate budgets.

Input:   `POST` one CloudEvent (binary or structured) or a batch (`application/cloudevents-batch+json`)
         of type `io.finops.aicost.usage` whose data is functions.models.aicost.AICostUsage.
Reads:   AICostPricing CRs (price overrides, FX table) and AICostBudget CRs, on every request, so
         price and budget changes apply without a redeploy; the DatabaseConfig named by
         FINOPS_AICOST_DATABASE_CONFIG for the database user.
Writes:  one FOCUS-shaped row per event id into FINOPS_AICOST_TABLE (functions.storage.aicost_store);
         fired alerts into FINOPS_AICOST_ALERTS_TABLE.
Emits:   `io.finops.budget.exceeded`, once per (budget, threshold, period), POSTed to K_SINK.
Answers: 200 with {accepted, duplicates, rejected, errors[{index, id, loc, msg}], conflicted,
         conflicts[{index, id, loc, msg}], alerts}; 400 when nothing in the request was acceptable
         (every bad field listed); 422 when nothing was stored and an event conflicts (final, like
         a 400: Knative retries a 409, and a conflict stays one); 503 when the database or sink is down.

Ids: an event id is stored once, with a hash of its content (type, source, subject, time, data).
The same event again is a duplicate (accepted, nothing changes: redelivery is normal). The same id
with OTHER content is a conflict: never accepted, never stored over the first, and named in the
answer (a forged event sent first with a real event's id must not make the real one look stored).

Budgets: after the insert, for every budget whose scope matches an accepted event, the spend of each
period those events fall in (by event time, so late events count in their own period) is summed from
the table; each threshold at or below spend/amount is claimed by a single-row INSERT on a primary key,
and only the request that wins the claim emits the alert. If posting it fails the claim is released
and the request answers 503, so the redelivery fires it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from functions import events
from functions.clients import kube
from functions.clients.db import Database
from functions.clients.kube import ResourceReader
from functions.codecs import ai_pricing, json_limits
from functions.errors import FieldError, InvalidInput, Unprocessable, field_errors
from functions.logs import get_logger
from functions.models.aicost import SERVICE_CATEGORY, AICostBudget, AICostEvent, AICostPricing
from functions.settings.aicost import AICostSettings
from functions.storage import aicost_store

__all__ = ["database", "decode", "focus_row", "handle", "sink_publisher"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

log = get_logger("aicost")
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
Publish = Callable[[events.Event], None]


@dataclass
class IngestReport:
    """What one request did: the answer body, its status, and the alerts it fired."""

    accepted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[events.Event] = field(default_factory=list)
    batch: bool = True
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0

    @property
    def refused(self) -> bool:
        """Nothing in the request was acceptable."""
        return bool(self.errors) and not self.accepted

    def body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": len(self.errors),
                "errors": self.errors, "conflicted": len(self.conflicts), "conflicts": self.conflicts,
                "alerts": [a.data for a in self.alerts]}

    def raise_if_nothing_stored(self) -> None:
        """Every valid event conflicts with a stored one: a 422 naming each (nothing was accepted)."""
        if self.conflicts and not self.accepted:
            raise Unprocessable("conflict: no AI cost event stored, every valid event's id is already stored with "
                               "other content", [FieldError(_loc(c["index"], c["loc"], self.batch), c["msg"])
                                                 for c in [*self.conflicts, *self.errors]])

    def raise_if_refused(self) -> None:
        """Nothing acceptable: a 400 listing every bad field of every event."""
        if self.refused:
            raise InvalidInput("no acceptable AI cost event in the request",
                               [FieldError(_loc(e["index"], e["loc"], self.batch), e["msg"]) for e in self.errors])


def _loc(index: int, loc: str, batch: bool) -> str:
    return f"{index}.{loc}" if batch else loc


# ---------------------------------------------------------------- decoding


def decode(headers: Mapping[str, str], body: bytes) -> tuple[list[events.Event | InvalidInput], bool]:
    """The request's events (a bad one as its InvalidInput, so the others still count) and whether it was a batch."""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if not ctype.lower().startswith(BATCH_CONTENT_TYPE):
        return [events.from_http(headers, body)], False
    json_limits.check_depth(body)  # before the stdlib parser, which recurses per level
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("batch is not JSON", [FieldError("body", str(exc))]) from exc
    if not isinstance(items, list):
        raise InvalidInput("a batch must be a JSON array of CloudEvents", [FieldError("body", f"got {type(items).__name__}")])
    out: list[events.Event | InvalidInput] = []
    for item in items:
        try:
            out.append(events.from_dict(item) if isinstance(item, dict) else _not_an_object(item))
        except InvalidInput as exc:
            out.append(exc)
    return out, True


def _not_an_object(item: Any) -> events.Event:
    raise InvalidInput("not a CloudEvent", [FieldError("event", f"expected an object, got {type(item).__name__}")])


# ---------------------------------------------------------------- the handler


def handle(items: Sequence[events.Event | InvalidInput], db: Database, reader: ResourceReader,
           settings: AICostSettings, publish: Publish | None, *, batch: bool = True,
           now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> IngestReport:
    """Validate, price and store every event once; evaluate budgets; fire alerts (see module doc)."""
    if len(items) > settings.max_batch:
        raise InvalidInput("batch too large", [FieldError("body", f"{len(items)} events; at most {settings.max_batch} per request")])
    outcome = IngestReport(batch=batch)
    table = ai_pricing.price_table(_crs(reader, AICostPricing))
    ingested = now()
    rows: list[list[Any]] = []
    good: list[tuple[int, AICostEvent, str]] = []
    for index, item in enumerate(items):
        parsed = _parse(index, item, table, ingested, outcome)
        if parsed is not None:
            assert not isinstance(item, InvalidInput)
            digest = content_hash(item)
            good.append((index, parsed[0], digest))
            rows.append(_with_hash(parsed[1], digest))
    outcome.accepted = len(good)
    outcome.raise_if_refused()
    if not good:
        return outcome
    _ensure_tables(db, settings)
    ids = [e.id for _, e, _ in good]
    before = aicost_store.content_hashes(db, settings.table, ids)  # duplicates: known ids are not sent again
    aicost_store.insert_events(db, settings.table, [r for r, (_, e, _) in zip(rows, good, strict=True) if e.id not in before])
    stored = aicost_store.content_hashes(db, settings.table, ids) if len(before) < len(set(ids)) else before
    kept = _sort_out(good, before, stored, outcome)
    outcome.raise_if_nothing_stored()
    outcome.alerts = evaluate_budgets(kept, db, reader, settings, publish, now)
    log.info("ai costs stored", extra={"accepted": outcome.accepted, "duplicates": outcome.duplicates,
                                       "rejected": len(outcome.errors), "conflicted": len(outcome.conflicts),
                                       "alerts": len(outcome.alerts)})
    return outcome


def content_hash(event: events.Event) -> str:
    """SHA-256 of what an event says (type, source, subject, time as an instant, data as canonical JSON):
    the same event redelivered hashes the same whatever the broker added (extensions, arrival time)."""
    when = str(event.time or "")
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone(UTC).isoformat() if when else ""
    data = event.data.decode("utf-8", "replace") if isinstance(event.data, bytes) else event.data
    canonical = json.dumps({"type": event.type, "source": event.source, "subject": event.subject or "", "time": when,
                            "data": data}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _with_hash(row: list[Any], digest: str) -> list[Any]:
    out = list(row)
    out[aicost_store.ROW_COLUMNS.index("x_contenthash")] = digest
    return out


def _sort_out(good: Sequence[tuple[int, AICostEvent, str]], before: Mapping[str, str | None],
              stored: Mapping[str, str | None], outcome: IngestReport) -> list[AICostEvent]:
    """Stored, duplicate or conflict, per event, from what the table holds after the insert (whichever
    request or instance won an id, the stored content decides) and before it (a duplicate)."""
    kept: list[AICostEvent] = []
    for index, event, digest in good:
        have = stored.get(event.id, digest)
        if have is not None and have != digest:
            outcome.conflicts.append({"index": index, "id": event.id, "loc": "id", "msg": (
                f"conflict: event id {event.id!r} is already stored with other content (sha256 {have[:12]}…, "
                f"this event's {digest[:12]}…); the stored event is kept: send a new id for a new event")})
            continue
        outcome.duplicates += 1 if event.id in before else 0
        kept.append(event)
    outcome.accepted = len(kept)
    if outcome.conflicts:
        log.warning("AI cost events conflict with stored ones", extra={
            "conflicted": len(outcome.conflicts), "ids": [c["id"] for c in outcome.conflicts[:20]]})
    return kept


def _parse(index: int, item: events.Event | InvalidInput, table: ai_pricing.PriceTable, ingested: datetime,
           outcome: IngestReport) -> tuple[AICostEvent, list[Any]] | None:
    """One event as (model, row), or None after recording every reason it was refused."""
    event_id = None if isinstance(item, InvalidInput) else item.id
    try:
        if isinstance(item, InvalidInput):
            raise item
        if item.type != events.AICOST_USAGE:
            raise InvalidInput("wrong type", [FieldError("type", f"expected {events.AICOST_USAGE}, got {item.type}")])
        model = _validate(item)
        priced = ai_pricing.price(model, table)
    except InvalidInput as exc:
        reasons = exc.errors or [FieldError("event", exc.message)]
    except ai_pricing.PricingError as exc:
        reasons = exc.errors
    else:
        return model, focus_row(model, priced, ingested)
    outcome.errors.extend({"index": index, "id": event_id, "loc": r.loc, "msg": r.msg} for r in reasons)
    return None


def _validate(event: events.Event) -> AICostEvent:
    if not isinstance(event.data, dict):
        raise InvalidInput("bad data", [FieldError("data", "must be a JSON object (AICostUsage)")])
    try:
        return AICostEvent.model_validate({"id": event.id, "time": event.time or None, "data": event.data})
    except ValidationError as exc:
        raise InvalidInput("invalid AI cost event", field_errors(exc)) from exc


_READY: set[tuple[str, str, str]] = set()


def _ensure_tables(db: Database, settings: AICostSettings) -> None:
    """Create the tables once per process and database."""
    key = (db.url, settings.table, settings.alerts_table)
    if key not in _READY:
        aicost_store.ensure_tables(db, settings.table, settings.alerts_table)
        _READY.add(key)


def _crs(reader: ResourceReader, model: type[Any]) -> list[Any]:
    """Every CR of a kind; a broken one is logged and skipped, never the reason events are lost."""
    out = []
    for body in reader.list(model.KIND):
        try:
            out.append(model.model_validate(body))
        except ValidationError as exc:
            meta = body.get("metadata", {}) if isinstance(body, dict) else {}
            log.error("invalid CR skipped", extra={"kind": model.KIND, "name": meta.get("name"),
                                                   "namespace": meta.get("namespace"), "reason": str(exc)})
    return out


# ---------------------------------------------------------------- rows


def focus_row(event: AICostEvent, priced: ai_pricing.Priced, ingested: datetime) -> list[Any]:
    """The FOCUS-shaped row of one event, values in aicost_store.ROW_COLUMNS order."""
    d = event.data
    month_start = datetime(event.time.year, event.time.month, 1, tzinfo=UTC)
    month_end = datetime(month_start.year + (month_start.month == 12), month_start.month % 12 + 1, 1, tzinfo=UTC)
    what = "GPU compute" if d.gpu else "LLM API" if d.llm else "AI cost"
    values: dict[str, Any] = {
        "x_eventid": event.id, "x_team": d.team, "x_project": d.project, "x_source": d.source,
        "x_cost_usd": float(priced.usd), "x_cost_usd_exact": str(priced.usd), "x_fxrate": str(priced.fx_rate),
        "x_price": priced.price, "x_pricesource": priced.price_source, "x_eventtime": _ms(event.time),
        "billedcost": float(priced.amount), "effectivecost": float(priced.amount), "listcost": float(priced.amount),
        "billingcurrency": priced.currency, "billingperiodstart": _ms(month_start), "billingperiodend": _ms(month_end),
        "chargeperiodstart": _ms(event.time), "chargeperiodend": _ms(event.time), "chargecategory": "Usage",
        "chargedescription": f"{what}: {d.source} for {d.team}/{d.project}", "chargefrequency": "Usage-Based",
        "servicecategory": SERVICE_CATEGORY, "servicename": what, "providername": priced.provider or d.source,
        "skuid": priced.sku or None, "consumedquantity": str(priced.quantity), "consumedunit": priced.unit,
        "pricingquantity": float(priced.quantity), "pricingunit": priced.unit,
        "listunitprice": float(priced.unit_price) if priced.unit_price is not None else None,
        "resourceid": f"{d.team}/{d.project}/{d.source}", "tags": d.tags(),
        "finops_source": "aicost", "finops_run": event.id, "finops_ingested_at": _ms(ingested),
        "x_contenthash": None,  # filled by handle() from the CloudEvent (content_hash)
    }
    return [values.get(c) for c in aicost_store.ROW_COLUMNS]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


# ---------------------------------------------------------------- budgets


def evaluate_budgets(good: Sequence[AICostEvent], db: Database, reader: ResourceReader, settings: AICostSettings,
                     publish: Publish | None, now: Callable[[], datetime]) -> list[events.Event]:
    """Alerts newly fired by the periods the accepted events touched (each posted when publish is given)."""
    fired: list[events.Event] = []
    for budget in _crs(reader, AICostBudget):
        periods = {budget.spec.period_of(e.time) for e in good if budget.spec.matches(e.data)}
        for start, end, label in sorted(periods):
            spent = aicost_store.spend(db, settings.table, budget.spec.scope(), start, end)
            for threshold in budget.spec.thresholds:
                if spent >= budget.spec.amount * Decimal(str(threshold)):
                    alert = _fire(budget, threshold, spent, (start, end, label), db, settings, publish, now)
                    if alert is not None:
                        fired.append(alert)
    return fired


def _fire(budget: AICostBudget, threshold: float, spent: Decimal, period: tuple[datetime, datetime, str],
          db: Database, settings: AICostSettings, publish: Publish | None,
          now: Callable[[], datetime]) -> events.Event | None:
    start, end, label = period
    ref = f"{budget.metadata.namespace}/{budget.metadata.name}"
    key = f"{ref}|{threshold}|{start.isoformat()}"
    amount = budget.spec.amount
    data = {"budget": ref, "threshold": threshold, "spend": str(spent), "amount": str(amount),
            "ratio": float(spent / amount) if amount else None, "period": budget.spec.period, "periodLabel": label,
            "periodStart": _iso(start), "periodEnd": _iso(end), "scope": budget.spec.scope()}
    row = {"alertkey": key, "budget": ref, "threshold": threshold, "period": label, "periodstart": _ms(start),
           "periodend": _ms(end), "spend": float(spent), "amount": float(amount), "firedat": _ms(now()),
           "triggerevent": None}
    if not aicost_store.claim_alert(db, settings.alerts_table, row):
        return None
    alert = events.Event(type=events.BUDGET_EXCEEDED, source=f"/finops/{settings.source_service or 'aicost'}",
                         data=data, subject=f"AICostBudget/{ref}", id=hashlib.sha256(key.encode()).hexdigest()[:32])
    if publish is not None:
        try:
            publish(alert)
        except Exception:
            aicost_store.release_alert(db, settings.alerts_table, key)
            raise
    log.warning("budget threshold crossed", extra={"budget": ref, "threshold": threshold, "spend": str(spent),
                                                   "amount": str(amount), "period": label})
    return alert


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- wiring helpers (used by functions.main)


def database(settings: AICostSettings, reader: ResourceReader, cache: dict[tuple[str, str, str], Database]) -> Database:
    """The database client, credentials from the DatabaseConfig (re-read per request, as the scraper does)."""
    # a deployment setting, not the event's fault: a deployment error (500, redelivered), never dropped
    user, password = kube.configured_database_credentials(reader, settings.database_config, "FINOPS_AICOST_DATABASE_CONFIG")
    key = (settings.sql_url(), user, password)
    if key not in cache:
        cache[key] = Database(*key)
    return cache[key]


def sink_publisher(settings: AICostSettings) -> Publish | None:
    """Post alerts to K_SINK in binary mode; None (alerts only recorded and returned) without a sink."""
    if not settings.sink:
        return None
    from functions.clients import sink

    def publish(event: events.Event) -> None:
        headers, body = events.to_binary(event)
        sink.post_event(settings.sink, headers, body)

    return publish
