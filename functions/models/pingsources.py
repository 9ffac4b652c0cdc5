"""The PingSources a schedule-bearing CR needs: one pure rule shared by the kopf bridge and the local stack.

- ExporterScraperConfig with an exporterConfig -> one PingSource `<name>-exporter` at
  `spec.exporterConfig.pollingInterval`. Its scrape (if it has a scraperConfig) follows
  `io.finops.export.completed`, so `spec.scraperConfig.pollingInterval` is accepted but has no timer
  of its own (the schedule note says so).
- ExporterScraperConfig with only a scraperConfig -> one PingSource `<name>-scraper` at
  `spec.scraperConfig.pollingInterval`: no exporter runs, so the scraper needs a timer, like a ScraperConfig.
- ScraperConfig -> one PingSource `<name>-scraper` at `spec.pollingInterval`.
- InferenceRun with a `spec.schedule` -> one PingSource `<name>-inference` at that cron
  (functions.models.cron: 5 fields verbatim, `@daily` and the other descriptors as the 5 fields
  Knative reads them as; 6 and 7 fields raise ScheduleRefused, a ValueError whose `loc` is
  `spec.schedule`). The original schedule is kept in an annotation. Without a schedule: none (it runs
  once, on io.finops.cr.applied).
- Every other kind (DatabaseConfig, InferenceConfig, ...) -> none.

The tick carries `data = {kind, namespace, name}` and CloudEvent extensions `finopstarget`
(exporter|scraper|inference, what the Triggers filter on), `kind`, `crnamespace`, `crname`. Intervals that cron
cannot express are rounded by `durations.to_schedule`, whose note is kept in an annotation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from functions.models import crs, inference
from functions.models.cron import pingsource_cron
from functions.models.durations import Schedule, format_go_duration, parse_go_duration, to_schedule

BROKER = "default"
BROKER_NAMESPACE = "finops"
ANNOTATION_INTERVAL = "finops.krateo.io/polling-interval"
ANNOTATION_NOTE = "finops.krateo.io/schedule-note"
ANNOTATION_SCHEDULE = "finops.krateo.io/schedule"
LABEL_OWNER_KIND = "finops.krateo.io/owner-kind"
LABEL_OWNER_NAME = "finops.krateo.io/owner-name"
_MAX_NAME = 63
NO_SCRAPER_TIMER = (
    "scraperConfig.pollingInterval ({interval}) has no separate timer: "
    "the scrape follows io.finops.export.completed"
)


@dataclass(frozen=True)
class PingPlan:
    """One PingSource manifest and why its schedule is what it is."""

    purpose: str
    schedule: Schedule
    manifest: dict[str, Any]
    note: str


def plan(cr: Mapping[str, Any] | BaseModel, broker_namespace: str = BROKER_NAMESPACE) -> list[PingPlan]:
    """The PingSources for one CR (validated against its model first), with their schedule notes.

    The PingSource lives beside its CR (owner references are namespace-local); its sink is the
    Broker `default` in `broker_namespace`, where the functions run.
    """
    model = _as_model(cr)
    if isinstance(model, crs.ExporterScraperConfig):
        exporter, scraper = model.spec.exporter_config, model.spec.scraper_config
        if exporter is not None:
            extra = NO_SCRAPER_TIMER.format(interval=scraper.polling_interval) if scraper is not None else ""
            return [_plan(model, "exporter", exporter.polling_interval, extra, broker_namespace)]
        if scraper is not None:  # scraper-only: nothing exports, so nothing would trigger its scrape
            return [_plan(model, "scraper", scraper.polling_interval, "", broker_namespace)]
        return []
    if isinstance(model, crs.ScraperConfig):
        return [_plan(model, "scraper", model.spec.polling_interval, "", broker_namespace)]
    if isinstance(model, inference.InferenceRun) and model.spec.schedule is not None:
        ping = pingsource_cron(model.spec.schedule)  # ScheduleRefused for 6 and 7 fields
        schedule = Schedule(ping.cron, 0, ping.note)  # seconds 0: a cron has no single period
        manifest = _manifest(model, inference.PING_TARGET, schedule, {ANNOTATION_SCHEDULE: ping.original}, broker_namespace)
        return [PingPlan(inference.PING_TARGET, schedule, manifest, ping.note)]
    return []


def pingsources_for(cr: Mapping[str, Any] | BaseModel, broker_namespace: str = BROKER_NAMESPACE) -> list[dict[str, Any]]:
    """PingSource manifests (sources.knative.dev/v1) for one CR; [] for kinds without a schedule."""
    return [p.manifest for p in plan(cr, broker_namespace)]


def pingsource_name(cr_name: str, purpose: str) -> str:
    """`<cr-name>-<purpose>`, shortened with a stable hash when it would pass 63 characters."""
    name = f"{cr_name}-{purpose}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(purpose) - len(digest) - 2
    return f"{cr_name[:keep].rstrip('-.')}-{digest}-{purpose}"


def _as_model(cr: Mapping[str, Any] | BaseModel) -> BaseModel:
    if isinstance(cr, BaseModel):
        return cr
    model = {**crs.COLLECTION_KINDS, **inference.INFERENCE_KINDS}.get(str(cr.get("kind", "")))
    if model is None:
        return crs.DatabaseConfig.model_construct()  # no schedule for unknown kinds
    return model.model_validate(dict(cr))


def _plan(model: Any, purpose: str, interval: str, extra_note: str, broker_namespace: str) -> PingPlan:
    schedule = to_schedule(parse_go_duration(interval))
    note = "; ".join(n for n in (schedule.note, extra_note) if n)
    annotations = {ANNOTATION_INTERVAL: format_go_duration(parse_go_duration(interval))}
    manifest = _manifest(model, purpose, Schedule(schedule.cron, schedule.seconds, note), annotations, broker_namespace)
    return PingPlan(purpose, schedule, manifest, note)


def _manifest(model: Any, purpose: str, schedule: Schedule, annotations: dict[str, str],
              broker_namespace: str) -> dict[str, Any]:
    """The PingSource of one CR: its cron, the note (when there is one) and the tick naming the CR."""
    meta = model.metadata
    annotations = dict(annotations)
    if schedule.note:
        annotations[ANNOTATION_NOTE] = schedule.note
    metadata: dict[str, Any] = {
        "name": pingsource_name(meta.name, purpose),
        "namespace": meta.namespace,
        "labels": {"app.kubernetes.io/managed-by": "finops-bridge", LABEL_OWNER_KIND: model.KIND},
        "annotations": annotations,
    }
    if len(meta.name) <= _MAX_NAME:  # label values are at most 63 characters
        metadata["labels"][LABEL_OWNER_NAME] = meta.name
    if meta.uid:
        metadata["ownerReferences"] = [{
            "apiVersion": model.api_version, "kind": model.KIND, "name": meta.name,
            "uid": meta.uid, "controller": True, "blockOwnerDeletion": True,
        }]
    data = {"kind": model.KIND, "namespace": meta.namespace, "name": meta.name}
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": metadata,
        "spec": {
            "schedule": schedule.cron,
            "timezone": "UTC",
            "contentType": "application/json",
            "data": json.dumps(data, separators=(",", ":")),
            "ceOverrides": {"extensions": {
                "finopstarget": purpose, "kind": model.KIND,
                "crnamespace": meta.namespace, "crname": meta.name,
            }},
            "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                             "name": BROKER, "namespace": broker_namespace}},
        },
    }
