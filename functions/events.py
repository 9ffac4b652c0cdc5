"""The event catalogue and CloudEvent encode/decode: the only module that imports cloudevents.

Types are reverse-DNS under `io.finops.`; PingSource ticks keep Knative's type. Every event a
function emits is listed here with its meaning, and the table of docs/events.md is generated from CATALOGUE.
Decoding checks JSON nesting first (functions.codecs.json_limits): the SDK parses with the stdlib
json, which raises RecursionError on `[[[[…]]]]`; here that is a 400 naming the depth.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.codecs import json_limits
from functions.errors import FieldError, InvalidInput

PREFIX = "io.finops."
PING = "dev.knative.sources.ping"
CR_APPLIED = "io.finops.cr.applied"
CR_DELETED = "io.finops.cr.deleted"
EXPORT_COMPLETED = "io.finops.export.completed"
UPLOAD_COMPLETED = "io.finops.upload.completed"
EXPORT_FAILED = "io.finops.export.failed"
SCRAPE_FAILED = "io.finops.scrape.failed"
AICOST_USAGE = "io.finops.aicost.usage"
AICOST_RECORDED = "io.finops.aicost.recorded"
BUDGET_EXCEEDED = "io.finops.budget.exceeded"
CR_RECONCILED = "io.finops.cr.reconciled"
OPTIMIZATION_COMPUTED = "io.finops.optimization.computed"
OPTIMIZATION_LABELLED = "io.finops.optimization.labelled"
OPTIMIZATION_SKIPPED = "io.finops.optimization.skipped"
INFERENCE_COMPLETED = "io.finops.inference.completed"
INFERENCE_FAILED = "io.finops.inference.failed"

CATALOGUE: dict[str, str] = {
    PING: "PingSource tick; data names the config to run: {kind, namespace, name}.",
    CR_APPLIED: "A custom resource was created or changed; subject <kind>/<namespace>/<name>, data = the CR.",
    CR_DELETED: "A custom resource was deleted; subject <kind>/<namespace>/<name>, data = the last CR.",
    EXPORT_COMPLETED: "An exporter stored a new snapshot; data {config, metricType, rows, pages, received, unvalued, reasons} (unvalued: rows without a usable value, kept in the snapshot for the handler to judge; `rejected` too for an exporter-only config). Triggers the scrape.",
    UPLOAD_COMPLETED: "A scrape committed its rows to the database; data {config, table, run, rows, parts, received, stored, rejected, reasons, findings} (received = stored + rejected; reasons: the first rejected rows' {row, loc, value, msg}). Terminal: alerting may subscribe.",
    EXPORT_FAILED: "An export cycle refused its input (payload, config or names; the last good snapshot kept, the CR's status says Ready=False); data {config, error, errors}. Terminal: alerting may subscribe.",
    SCRAPE_FAILED: "A scrape cycle refused its input (config, DatabaseConfig, Secret, names; the CR's status says Ready=False); data {config, error, errors}. Terminal: alerting may subscribe.",
    AICOST_USAGE: "An AI/ML cost (GPU time, LLM tokens or a known cost); data = functions.models.aicost.AICostUsage (schemas/aicost-event.json). Single or batched; routed to aicost.",
    AICOST_RECORDED: "Reply of aicost when no budget fired: data {accepted, stored, duplicates, rejected}. Terminal.",
    BUDGET_EXCEEDED: "An AICostBudget crossed a threshold; data {budget, threshold, spend, amount, period, periodStart, periodEnd, scope}. Once per (budget, threshold, period). Terminal here: subscribe your alerting (a Trigger on this type) to it.",
    CR_RECONCILED: "Reply of focus_ingest and notebooks: what one CR event did; subject <kind>/<namespace>/<name>, data {result, ..., status.conditions}. Terminal.",
    OPTIMIZATION_LABELLED: "Reply of the optimizer to its day-2 ping: the compositions labelled for an UPDATE admission; data {labelled, compositions, value}. Terminal.",
    OPTIMIZATION_COMPUTED: "The optimizer patched a composition at admission; subject <kind>/<namespace>/<name>, data {operation, rightsizing | placement, reasons}. Terminal: audit and alerting may subscribe.",
    OPTIMIZATION_SKIPPED: "An admission went through unchanged because the optimizer failed or ran out of time (fail open); data {operation, uid, reason}. Terminal: alerting may subscribe.",
    INFERENCE_COMPLETED: "Reply of inference_runner: an InferenceRun's Contract ran (input notebook, KServe v2 infer, output notebook); subject InferenceRun/<namespace>/<name>, data {run, uid, generation, runId, jobName, trigger, predictions, inputShape, attempts, startedAt, finishedAt}. Terminal: consumers of the forecasts may subscribe.",
    INFERENCE_FAILED: "Reply of inference_runner: a run failed at one step (contract 2, input 3, infer 4, output 5: Krateo's runner exit codes) after its tries (a run that fails before its output step stores nothing); the run's status says Ready=False naming the step; data {run, uid, generation, runId, step, exitCode, error, errors, attempts, retryable}. Terminal: alerting may subscribe.",
}


@dataclass(frozen=True)
class Event:
    """A decoded CloudEvent, SDK-free so that stages never touch cloudevents types."""

    type: str
    source: str
    data: Any = None
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    extensions: Mapping[str, str] = field(default_factory=dict)


def new(type_: str, source: str, data: Any = None, subject: str | None = None, **extensions: str) -> Event:
    return Event(type=type_, source=source, data=data, subject=subject, extensions=dict(extensions))


def _to_sdk(event: Event) -> Any:
    from cloudevents.http import CloudEvent

    attrs: dict[str, Any] = {"type": event.type, "source": event.source, "id": event.id, "time": event.time}
    if event.subject:
        attrs["subject"] = event.subject
    attrs.update(event.extensions)
    return CloudEvent(attrs, event.data)


def to_binary(event: Event) -> tuple[dict[str, str], bytes]:
    """Encode as binary-mode HTTP (ce-* headers, JSON body)."""
    from cloudevents.conversion import to_binary as sdk_to_binary

    headers, body = sdk_to_binary(_to_sdk(event))
    if "content-type" not in {k.lower() for k in headers}:
        headers["content-type"] = "application/json"
    return dict(headers), body if isinstance(body, bytes) else (body or b"")


def to_structured(event: Event) -> tuple[dict[str, str], bytes]:
    from cloudevents.conversion import to_structured as sdk_to_structured

    headers, body = sdk_to_structured(_to_sdk(event))
    return dict(headers), body


def from_http(headers: Mapping[str, str], body: bytes) -> Event:
    """Decode one binary or structured CloudEvent; InvalidInput when it is not one."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http as sdk_from_http

    json_limits.check_depth(body)  # binary mode's data and a structured envelope alike
    try:
        ce = sdk_from_http(dict(headers), body, data_unmarshaller=_sdk_data)
    except GenericException as exc:
        raise InvalidInput("not a CloudEvent", [FieldError("headers", str(exc))]) from exc
    return _from_sdk(ce)


def from_dict(obj: Mapping[str, Any]) -> Event:
    from cloudevents.conversion import from_dict as sdk_from_dict
    from cloudevents.exceptions import GenericException
    from cloudevents.http import CloudEvent

    try:
        ce = sdk_from_dict(CloudEvent, dict(obj))
    except (GenericException, TypeError, KeyError) as exc:
        raise InvalidInput("not a CloudEvent", [FieldError("event", str(exc))]) from exc
    return _from_sdk(ce)


def from_batch(body: bytes) -> list[Event]:
    """application/cloudevents-batch+json: the SDK 1.x has no batch reader, so split and read each."""
    json_limits.check_depth(body)
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("batch is not JSON", [FieldError("body", str(exc))]) from exc
    if not isinstance(items, list):
        raise InvalidInput("batch must be a JSON array of CloudEvents")
    return [from_dict(item) for item in items]


def _sdk_data(content: str | bytes | None) -> Any:
    """The SDK's own rule for data (JSON if it parses, else as is), except that data nested too deep
    (data_base64 hides it from the envelope's check) stays bytes, refused by _from_sdk naming the depth."""
    if content is None or json_limits.too_deep(content) is not None:
        return content
    try:
        return json.loads(content)
    except (ValueError, TypeError, UnicodeDecodeError):
        return content


def _from_sdk(ce: Any) -> Event:
    attrs = dict(ce.get_attributes())
    known = {"type", "source", "id", "time", "subject", "specversion", "datacontenttype", "dataschema"}
    data = ce.get_data()
    if isinstance(data, bytes | bytearray):  # data_base64, or a binary body the SDK left alone
        json_limits.check_depth(data, where="data")
        try:
            data = json.loads(data)
        except ValueError:
            data = bytes(data)
    return Event(
        type=str(attrs["type"]),
        source=str(attrs["source"]),
        id=str(attrs["id"]),
        time=str(attrs.get("time") or ""),
        subject=attrs.get("subject"),
        data=data,
        extensions={k: str(v) for k, v in attrs.items() if k not in known},
    )
