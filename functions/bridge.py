"""The kopf bridge's decisions, pure: a CR body in, the event, PingSources and status it should get out.

operator/handlers.py (kopf) only reads and writes the cluster; everything it decides comes from here,
and the local stack derives the same PingSources through `functions.models.pingsources`, so a CR
behaves the same in a cluster and on a laptop. Rules:

- a CR is validated by its pydantic model (the registry's, which also generates crds/); every bad
  field is named (`spec.exporterConfig.pollingInterval: invalid Go duration ...`), metadata.name and
  metadata.namespace included (Kubernetes' DNS-1123 rules: functions read them back from events
  and use them as file names, so a name the rules refuse gets no event, not even on deletion);
- the Secrets it references (`api.endpointRef`, `passwordSecretRef` + key, an InferenceConfig's
  `krateo` storage endpointRef), the DatabaseConfig a scraper writes with and the InferenceConfig an
  InferenceRun runs must exist: a missing one is named too, and retried (it may be applied later);
- an InferenceRun's `spec.schedule` must be one a PingSource takes (functions.models.cron): 6 and 7
  fields pass Krateo's pattern but are refused, `spec.schedule` named with the reason in the status;
- a valid CR gets `io.finops.cr.applied` (subject `<Kind>/<ns>/<name>`, data = the validated CR) and its
  PingSources (owner references to the CR); an invalid one gets neither, and its PingSources are
  removed until it is fixed (a schedule that can only fail would fill the dead-letter sink);
- status (Krateo style): `Ready` (Available/Unavailable) and `Synced` (ReconcileSuccess/ReconcileError)
  with a message, `observedGeneration`, and `schedules` listing each PingSource's cron and the note
  saying what was chosen when cron cannot express the interval. The bridge owns Ready and Synced only:
  conditions of other types (an InferenceRun's `Succeeded`, written by the inference runner; a cycle's
  `Degraded`) are kept from the status it is given, which operator/handlers.py reads again just before
  writing (the status patch replaces the whole list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from functions import events
from functions.errors import FieldError, field_errors
from functions.models import crs, inference, k8s
from functions.models.k8s import conditions
from functions.models.k8s import now_rfc3339 as now_rfc3339  # re-exported: operator/handlers.py
from functions.models.names import label_problem, subdomain_problem
from functions.models.pingsources import (
    BROKER_NAMESPACE,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    PingPlan,
    plan,
)
from functions.models.registry import KindInfo, all_kinds

SOURCE = "/finops/bridge"
GROUPS = ("finops.krateo.io", "ai.krateo.io")
FINALIZER = "finops.krateo.io/bridge"
ANNOTATION_PREFIX = "bridge.finops.krateo.io"
_SERVER_ANNOTATIONS = (ANNOTATION_PREFIX + "/", "kopf.zalando.org/", "kubectl.kubernetes.io/last-applied")
SECRET = "Secret"

Lookup = Callable[[str, str, str], Mapping[str, Any] | None]
"""(kind, namespace, name) -> the object, or None when it does not exist; kind "Secret" for Secrets."""


def watched_kinds() -> list[KindInfo]:
    """Every registered CR kind of the groups the bridge serves (new registries are picked up as added)."""
    return [info for info in all_kinds().values() if info.group in GROUPS]


@dataclass(frozen=True)
class Reconciliation:
    """What one CR should produce. `errors` are final (fix the CR); `missing` are retried."""

    kind: str
    namespace: str
    name: str
    generation: int | None
    has_status: bool
    errors: list[FieldError] = field(default_factory=list)
    missing: list[FieldError] = field(default_factory=list)
    event: events.Event | None = None
    plans: list[PingPlan] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def ok(self) -> bool:
        return not self.errors and not self.missing

    @property
    def pingsources(self) -> list[dict[str, Any]]:
        return [p.manifest for p in self.plans] if self.ok else []

    @property
    def message(self) -> str:
        """One line naming every bad field, or what was scheduled."""
        bad = self.errors + self.missing
        if bad:
            return "; ".join(f"{e.loc}: {e.msg}" for e in bad)
        if not self.plans:
            return "valid; no schedule"
        return "; ".join(_plan_text(p) for p in self.plans)

    def schedules(self) -> list[dict[str, str]]:
        return [{
            "pingSource": str(p.manifest["metadata"]["name"]),
            "purpose": p.purpose,
            "interval": str(p.manifest["metadata"]["annotations"].get("finops.krateo.io/polling-interval", "")),
            "schedule": p.schedule.cron,
            "note": p.note,
        } for p in self.plans] if self.ok else []


def _plan_text(p: PingPlan) -> str:
    text = f"PingSource {p.manifest['metadata']['name']} runs {p.purpose} at {p.schedule.cron!r}"
    return f"{text} ({p.note})" if p.note else text


def reconcile(body: Mapping[str, Any], lookup: Lookup, broker_namespace: str = BROKER_NAMESPACE) -> Reconciliation:
    """Validate a CR body (as the API server holds it) and derive its event and PingSources."""
    meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    kind = str(body.get("kind") or "")
    base: dict[str, Any] = {
        "kind": kind, "namespace": str(meta.get("namespace") or "default"), "name": str(meta.get("name") or ""),
        "generation": meta.get("generation") if isinstance(meta.get("generation"), int) else None,
    }
    info = all_kinds().get(kind)
    if info is None:
        return Reconciliation(**base, has_status=False, errors=[FieldError("kind", f"unsupported kind {kind!r}")])
    base["has_status"] = info.has_status
    model, errors = validate(body, info)
    if model is None:
        return Reconciliation(**base, errors=errors)
    try:  # before the references: a schedule that can never run is final, a missing Secret is retried
        plans = plan(model, broker_namespace)
    except ValueError as exc:  # a schedule PingSource cannot take (ScheduleRefused names its field)
        return Reconciliation(**base, errors=[FieldError(str(getattr(exc, "loc", "spec")), str(exc))])
    missing = list(check_references(model, lookup))
    if missing:
        return Reconciliation(**base, missing=missing)
    return Reconciliation(**base, event=applied_event(model, info), plans=plans)


def validate(body: Mapping[str, Any], info: KindInfo) -> tuple[BaseModel | None, list[FieldError]]:
    """The CR through its model; status (ours to write) and server metadata are not the user's input."""
    doc = {k: v for k, v in body.items() if k != "status"}
    errors: list[FieldError] = []
    if doc.get("apiVersion") != info.api_version:
        errors.append(FieldError("apiVersion", f"expected {info.api_version}, got {doc.get('apiVersion')!r}"))
    try:
        model = info.model.model_validate(doc)
    except ValidationError as exc:
        return None, errors + field_errors(exc)
    return (None, errors) if errors else (model, [])


def check_references(model: BaseModel, lookup: Lookup) -> Iterator[FieldError]:
    """Every Secret (and key) and DatabaseConfig the CR names must exist; each missing one by its field."""
    for path, node in walk(model):
        if isinstance(node, crs.API) and node.endpoint_ref is not None:
            ref = node.endpoint_ref
            if lookup(SECRET, ref.namespace, ref.name) is None:
                yield FieldError(f"{path}.endpointRef", f"Secret {ref.namespace}/{ref.name} not found")
        elif isinstance(node, k8s.SecretKeySelector):
            secret = lookup(SECRET, node.namespace, node.name)
            if secret is None:
                yield FieldError(path, f"Secret {node.namespace}/{node.name} not found")
            elif node.key not in {*(secret.get("data") or {}), *(secret.get("stringData") or {})}:
                yield FieldError(f"{path}.key", f"Secret {node.namespace}/{node.name} has no key {node.key!r}")
        elif isinstance(node, crs.ScraperConfigSpec):
            ref = node.scraper_database_config_ref
            if lookup("DatabaseConfig", ref.namespace, ref.name) is None:
                yield FieldError(f"{path}.scraperDatabaseConfigRef", f"DatabaseConfig {ref.namespace}/{ref.name} not found")
        elif isinstance(node, inference.InferenceRunSpec):
            ref = node.config_ref
            if lookup(inference.InferenceConfig.KIND, ref.namespace, ref.name) is None:
                yield FieldError(f"{path}.configRef", f"InferenceConfig {ref.namespace}/{ref.name} not found")
        elif isinstance(node, inference.StorageSpec):
            for side in ("input", "output"):
                krateo = node.krateo(side)  # its shape was checked by the model
                secret_ref = krateo.api.endpoint_ref if krateo is not None else None
                if secret_ref is not None and lookup(SECRET, secret_ref.namespace, secret_ref.name) is None:
                    yield FieldError(f"{path}.{side}.{inference.KRATEO_STORAGE}.api.endpointRef",
                                     f"Secret {secret_ref.namespace}/{secret_ref.name} not found")


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted camelCase path, value) for every model in a validated CR, depth first."""
    if isinstance(node, BaseModel):
        yield path, node
        for name, info in type(node).model_fields.items():
            yield from walk(getattr(node, name), f"{path}.{info.alias or name}" if path else info.alias or name)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")


def event_data(model: BaseModel) -> dict[str, Any]:
    """The validated CR as JSON (defaults filled in), without status and the bridge's own bookkeeping."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})
    meta = data.get("metadata", {})
    meta.pop("managedFields", None)
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if not k.startswith(_SERVER_ANNOTATIONS)}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    if meta.get("finalizers") == [FINALIZER]:
        meta.pop("finalizers")
    return data


def applied_event(model: BaseModel, info: KindInfo) -> events.Event:
    data = event_data(model)
    return _cr_event(events.CR_APPLIED, info.kind, data)


def name_errors(body: Mapping[str, Any]) -> list[FieldError]:
    """metadata.name and metadata.namespace against Kubernetes' rules (what every consumer checks)."""
    meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    problems = (("metadata.name", subdomain_problem(meta.get("name"))),
                ("metadata.namespace", label_problem(meta.get("namespace") or "default")))
    return [FieldError(loc, problem) for loc, problem in problems if problem]


def deleted_event(body: Mapping[str, Any]) -> events.Event | None:
    """io.finops.cr.deleted with the last CR: validated when it still validates, else as it was;
    None (nothing to announce) when its name or namespace breaks Kubernetes' rules: no consumer
    would accept it, and no applied event was ever sent for it."""
    if name_errors(body):
        return None
    kind = str(body.get("kind") or "")
    info = all_kinds().get(kind)
    model = validate(body, info)[0] if info is not None else None
    data = event_data(model) if model is not None else {k: v for k, v in body.items() if k != "status"}
    return _cr_event(events.CR_DELETED, kind, data)


def _cr_event(type_: str, kind: str, data: dict[str, Any]) -> events.Event:
    meta = data.get("metadata", {})
    ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    return events.new(type_, SOURCE, data=data, subject=f"{kind}/{ns}/{name}", kind=kind, crnamespace=ns, crname=name)


# ---- PingSource ownership -----------------------------------------------------------------------


def owned(pingsource: Mapping[str, Any], kind: str, name: str) -> bool:
    """A PingSource belongs to a CR by owner reference (a real API server), or by our labels."""
    meta = pingsource.get("metadata") or {}
    if any(o.get("kind") == kind and o.get("name") == name for o in meta.get("ownerReferences") or []):
        return True
    labels = meta.get("labels") or {}
    return bool(labels.get(LABEL_OWNER_KIND) == kind and labels.get(LABEL_OWNER_NAME) == name)


def stale(existing: list[Mapping[str, Any]], rec: Reconciliation) -> list[str]:
    """Names of the CR's PingSources that it should no longer have (all of them when it is not ok)."""
    keep = {p["metadata"]["name"] for p in rec.pingsources}
    return [str(p["metadata"]["name"]) for p in existing
            if owned(p, rec.kind, rec.name) and p["metadata"]["name"] not in keep]


def differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True when a stored PingSource lacks what we want in it (server-added fields are ignored)."""
    return not _contains(current, wanted)


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_contains(have.get(k), v) for k, v in want.items())
    return bool(have == want)


# ---- status -------------------------------------------------------------------------------------


def status(rec: Reconciliation, old: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The status to write after a reconcile (delivery failures use `delivery_failed`): Ready and Synced
    replaced, every other condition type of `old` kept (another writer's)."""
    old_conditions = list((old or {}).get("conditions") or [])
    if rec.ok:
        conds = conditions(old_conditions, True, "Available", True, "ReconcileSuccess", rec.message, now)
    else:
        conds = conditions(old_conditions, False, "Unavailable", False, "ReconcileError", rec.message, now)
    out: dict[str, Any] = {"conditions": conds, "schedules": rec.schedules()}
    if rec.generation is not None:
        out["observedGeneration"] = rec.generation
    return out


def delivery_failed(rec: Reconciliation, old: Mapping[str, Any] | None, reason: str, now: str) -> dict[str, Any]:
    """Valid CR, but its event or PingSources could not be written yet: Synced False, retried."""
    out = status(rec, old, now)
    out["conditions"] = conditions(list((old or {}).get("conditions") or []), True, "Available", False,
                                   "ReconcileError", f"{rec.message}; not synced yet: {reason}", now)
    return out


def needs_event(body: Mapping[str, Any]) -> bool:
    """On resume (bridge restart) re-announce a CR only when its spec changed while we were away."""
    meta = body.get("metadata") or {}
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is None or meta.get("generation") != observed
