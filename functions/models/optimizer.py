"""The optimizer's wire shapes: AdmissionReview v1 in and out, JSONPatch, and what a composition asks for.

Pure: the webhook stage parses with these models and answers with `admission_response`. The answer is
always `allowed: true` (a mutating webhook that only advises never blocks an admission); a patch rides
along only when the policy decided to write one. Krateo answers `{}` for objects it does not handle,
which the API server logs as "webhook response was absent"; here every request gets a proper answer.

Where a composition says what it wants (documented in docs/optimization.md):
- day-2 (UPDATE, and the periodic ping): the resources to right-size are the composition's annotation
  `finops.krateo.io/resource-ids` (ids separated by commas or whitespace) or, as in Krateo, the
  `status.id` of every `status.managed[]` entry with `resource: virtualmachines`; usage comes from the
  table `spec.global.tableName + "_res"` through the database handler named by
  `spec.metricExporter.scraperDatabaseConfigRef` (its `<name>-endpoint` Secret), Krateo's defaults
  (`finops`, `finops-database-handler`/`krateo-system`) when absent. The result is written, as Krateo
  does, to `/spec/optimization` as a JSON *string*.
- day-1 (CREATE): annotations `finops.krateo.io/allowed-regions` (comma separated, required),
  `finops.krateo.io/duration` (Go duration, default 1h) and `finops.krateo.io/deadline` (RFC 3339 time
  or a Go duration from now, default 24h). The choice is written to the annotations
  `finops.krateo.io/placement-region`, `…/placement-start` and `…/placement-message`: annotations are
  accepted by every composition schema, where a new spec field would be pruned.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from functions.models.durations import parse_go_duration

ANNOTATION_PREFIX = "finops.krateo.io/"
RESOURCE_IDS = ANNOTATION_PREFIX + "resource-ids"
ALLOWED_REGIONS = ANNOTATION_PREFIX + "allowed-regions"
DURATION = ANNOTATION_PREFIX + "duration"
DEADLINE = ANNOTATION_PREFIX + "deadline"
PLACEMENT_REGION = ANNOTATION_PREFIX + "placement-region"
PLACEMENT_START = ANNOTATION_PREFIX + "placement-start"
PLACEMENT_MESSAGE = ANNOTATION_PREFIX + "placement-message"
OPTIMIZATION_LABEL = "optimization"  # Krateo's label trick: a new value forces an UPDATE admission


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class GroupVersionKind(_Wire):
    group: str = ""
    version: str = ""
    kind: str = ""


class AdmissionRequest(_Wire):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    namespace: str = ""
    name: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")


class AdmissionReview(_Wire):
    api_version: Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


def request_uid(body: Any) -> tuple[str, str]:
    """(apiVersion, uid) from a review too broken to parse: the answer must still echo the uid."""
    if not isinstance(body, dict):
        return "admission.k8s.io/v1", ""
    req = body.get("request")
    uid = req.get("uid") if isinstance(req, dict) else None
    api = body.get("apiVersion")
    return (api if api in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1") else "admission.k8s.io/v1",
            uid if isinstance(uid, str) else "")


def admission_response(api_version: str, uid: str, patch: list[dict[str, Any]] | None = None,
                       warnings: list[str] | None = None) -> dict[str, Any]:
    """AdmissionReview answer: allowed, `response.uid` = the request's, JSONPatch base64 when there is one."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    if warnings:  # kubectl prints these; keep each short (Kubernetes advises 120 characters)
        response["warnings"] = [_short(w)[:120] for w in warnings[:10]]
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


_ARM_ID = re.compile(r"/subscriptions/\S*/([^/\s]+)")


def _short(text: str) -> str:
    """Azure resource ids shortened to their last segment (the VM name, as Krateo's frontends show)."""
    return _ARM_ID.sub(r"\1", text)


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def add_op(obj: dict[str, Any], path: list[str], value: Any) -> list[dict[str, Any]]:
    """`add` at `path`, preceded by `add {}` for every missing parent (Krateo's helper, done once, in order)."""
    ops: list[dict[str, Any]] = []
    node: Any = obj
    for depth, key in enumerate(path[:-1]):
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            ops.append({"op": "add", "path": "/" + "/".join(_escape(p) for p in path[: depth + 1]), "value": {}})
            child = {}
        node = child
    ops.append({"op": "add", "path": "/" + "/".join(_escape(p) for p in path), "value": value})
    return ops


def annotation_ops(obj: dict[str, Any], values: dict[str, str]) -> list[dict[str, Any]]:
    """Set annotations, creating metadata.annotations when the object has none."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if not isinstance((meta or {}).get("annotations"), dict):
        return add_op(obj, ["metadata", "annotations"], dict(sorted(values.items())))
    return [op for key, value in sorted(values.items()) for op in add_op(obj, ["metadata", "annotations", key], value)]


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def split_ids(text: str) -> list[str]:
    """Resource ids from an annotation: comma or whitespace separated, order kept, duplicates dropped."""
    return list(dict.fromkeys(t for t in re.split(r"[,\s]+", text) if t))


class UsageSource(BaseModel):
    """Where a composition's usage series live: its database handler endpoint Secret and table (as Krateo's moving-window policy reads them)."""

    secret_namespace: str
    secret_name: str
    table: str


def usage_source(obj: dict[str, Any]) -> UsageSource:
    """Krateo's reading of the composition: `<scraperDatabaseConfigRef.name>-endpoint`, `<tableName>_res`."""
    ref = _get(obj, "spec", "metricExporter", "scraperDatabaseConfigRef") or {}
    name = ref.get("name") if isinstance(ref, dict) and ref.get("name") else "finops-database-handler"
    namespace = ref.get("namespace") if isinstance(ref, dict) and ref.get("namespace") else "krateo-system"
    table = _get(obj, "spec", "global", "tableName") or "finops"
    return UsageSource(secret_namespace=str(namespace), secret_name=f"{name}-endpoint", table=f"{table}_res")


def managed_vms(obj: dict[str, Any]) -> list[dict[str, str]]:
    """`status.managed[]` entries naming Azure VMs (Krateo keeps `resource == "virtualmachines"`)."""
    managed = _get(obj, "status", "managed")
    out = []
    for item in managed if isinstance(managed, list) else []:
        if isinstance(item, dict) and item.get("resource") == "virtualmachines" and item.get("name"):
            out.append({"apiVersion": str(item.get("apiVersion") or "compute.azure.com/v1api20220301"),
                        "resource": "virtualmachines", "name": str(item["name"]),
                        "namespace": str(item.get("namespace") or _get(obj, "metadata", "namespace") or "default")})
    return out


class PlacementRequest(BaseModel):
    """What a day-1 composition asks for (from its annotations)."""

    allowed_regions: list[str] = Field(min_length=1)
    duration: timedelta
    deadline: datetime


def placement_request(obj: dict[str, Any], now: datetime) -> PlacementRequest | None:
    """None when the composition asks for no placement (no allowed-regions annotation).

    ValueError (naming the annotation) when it asks badly: the webhook answers allowed, no patch, and
    says why in a warning.
    """
    ann = annotations_of(obj)
    if ALLOWED_REGIONS not in ann:
        return None
    regions = split_ids(ann[ALLOWED_REGIONS])
    if not regions:
        raise ValueError(f"{ALLOWED_REGIONS}: no region listed")
    try:
        duration = timedelta(seconds=parse_go_duration(ann.get(DURATION, "1h")))
    except ValueError as exc:
        raise ValueError(f"{DURATION}: {exc}") from exc
    if duration <= timedelta(0):
        raise ValueError(f"{DURATION}: must be positive")
    raw = ann.get(DEADLINE, "24h").strip()
    try:
        deadline = now + timedelta(seconds=parse_go_duration(raw))
    except ValueError:
        try:
            deadline = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{DEADLINE}: neither an RFC 3339 time nor a Go duration: {raw!r}") from exc
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
    return PlacementRequest(allowed_regions=regions, duration=duration, deadline=deadline)
