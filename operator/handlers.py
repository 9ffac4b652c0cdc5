"""The kopf bridge: CRs of finops.krateo.io / ai.krateo.io -> CloudEvents at K_SINK, PingSources, status.

    kopf run --standalone --all-namespaces operator/handlers.py

kopf registrations and cluster I/O only. What a CR should produce (its event, its PingSources, its
Ready/Synced conditions, which field is wrong) is decided by `functions.bridge`, which the local stack
shares. Settings (environment):

- `K_SINK`: where events go (the Broker; injected by the SinkBinding `finops-bridge`).
- `FINOPS_BROKER_NAMESPACE` (finops): the Broker the PingSources send to.
- `FINOPS_BRIDGE_RETRY_SECONDS` (30): retry delay while a referenced Secret is missing or the sink is down.
- `FINOPS_KUBE_HOST`: talk to this API server URL without credentials (tests); otherwise in-cluster
  service account, else ~/.kube/config.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import kopf

from functions import bridge, events
from functions.clients.kube import KubeApiReader
from functions.clients.sink import post_event
from functions.errors import FieldError, FinopsError

PINGSOURCES = ("sources.knative.dev", "v1", "pingsources")


def _retry_seconds() -> float:
    return float(os.environ.get("FINOPS_BRIDGE_RETRY_SECONDS") or 30)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Bookkeeping in annotations (every kind has them; not every kind has a status), our finalizer."""
    settings.persistence.finalizer = bridge.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=bridge.ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=bridge.ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # Kubernetes Events only for refusals and failures
    settings.peering.standalone = True


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    host = os.environ.get("FINOPS_KUBE_HOST")
    if host:
        return kopf.ConnectionInfo(server=host)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


# ---- cluster I/O (the `kubernetes` client; sync handlers run in kopf's thread pool) -------------------


@lru_cache(maxsize=1)
def _reader() -> KubeApiReader:
    return KubeApiReader(os.environ.get("FINOPS_KUBE_HOST") or None)


def _objects() -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(_reader()._client())


def _lookup(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
    return _reader().get(kind, namespace, name)


def _sync_pingsources(rec: bridge.Reconciliation) -> None:
    """Create or patch the wanted PingSources, delete the CR's others (owner refs do it on delete too)."""
    from kubernetes.client.exceptions import ApiException

    api = _objects()
    existing = api.list_namespaced_custom_object(*PINGSOURCES[:2], rec.namespace, PINGSOURCES[2]).get("items", [])
    by_name = {p["metadata"]["name"]: p for p in existing}
    for wanted in rec.pingsources:
        current = by_name.get(wanted["metadata"]["name"])
        if current is None:
            api.create_namespaced_custom_object(*PINGSOURCES[:2], rec.namespace, PINGSOURCES[2], wanted)
        elif bridge.differs(current, wanted):
            api.patch_namespaced_custom_object(*PINGSOURCES[:2], rec.namespace, PINGSOURCES[2],
                                               wanted["metadata"]["name"], wanted,
                                               _content_type="application/merge-patch+json")
    for name in bridge.stale(existing, rec):
        try:
            api.delete_namespaced_custom_object(*PINGSOURCES[:2], rec.namespace, PINGSOURCES[2], name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _send(event: events.Event) -> None:
    sink = os.environ.get("K_SINK", "")
    if not sink:
        raise kopf.TemporaryError("K_SINK is not set: is the SinkBinding finops-bridge applied?", delay=_retry_seconds())
    headers, body = events.to_binary(event)
    post_event(sink, headers, body)


# ---- handlers ---------------------------------------------------------------------------------------


def apply(body: kopf.Body, patch: kopf.Patch, reason: str, logger: kopf.Logger, **_: Any) -> None:
    """create / update / resume: validate, schedule, announce, and say so in status."""
    try:
        rec = bridge.reconcile(dict(body), _lookup, os.environ.get("FINOPS_BROKER_NAMESPACE") or "finops")
    except FinopsError as exc:  # the API server could not be read: try again later
        raise kopf.TemporaryError(str(exc), delay=_retry_seconds()) from exc
    now = bridge.now_rfc3339()
    try:
        _sync_pingsources(rec)
        if rec.event is not None and (reason != "resume" or bridge.needs_event(dict(body))):
            _send(rec.event)
    except (FinopsError, OSError) as exc:
        _write_status(patch, rec, bridge.delivery_failed(rec, _fresh_status(body, rec), str(exc), now))
        raise kopf.TemporaryError(str(exc), delay=_retry_seconds()) from exc
    except Exception as exc:  # an ApiException from the kubernetes client
        _write_status(patch, rec, bridge.delivery_failed(rec, _fresh_status(body, rec), _api_error(exc), now))
        raise kopf.TemporaryError(_api_error(exc), delay=_retry_seconds()) from exc
    _write_status(patch, rec, bridge.status(rec, _fresh_status(body, rec), now))
    if not rec.ok:
        kopf.warn(body, reason="ReconcileError", message=rec.message)
        logger.warning("%s is not valid: %s", rec.ref, rec.message)
    if rec.missing:  # a Secret or DatabaseConfig may be applied after the CR
        raise kopf.TemporaryError(rec.message, delay=_retry_seconds())


def delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Announce the deletion (at least once: the finalizer stays until the sink took it), drop PingSources.
    A CR whose name breaks Kubernetes' rules is not announced (logged instead): none was ever sent."""
    rec = bridge.Reconciliation(kind=str(body.get("kind")), namespace=str(body.metadata.namespace),
                                name=str(body.metadata.name), generation=None, has_status=False,
                                errors=[FieldError("metadata.deletionTimestamp", "deleted")])
    try:
        _sync_pingsources(rec)
        event = bridge.deleted_event(dict(body))
        if event is None:
            logger.warning("%s deleted, not announced: %s", rec.ref,
                           "; ".join(f"{e.loc}: {e.msg}" for e in bridge.name_errors(dict(body))))
        else:
            _send(event)
    except (FinopsError, OSError) as exc:
        raise kopf.TemporaryError(str(exc), delay=_retry_seconds()) from exc
    except Exception as exc:
        raise kopf.TemporaryError(_api_error(exc), delay=_retry_seconds()) from exc


def _fresh_status(body: kopf.Body, rec: bridge.Reconciliation) -> dict[str, Any]:
    """The CR's status as stored now, not as this handler's body had it: the status patch replaces the
    whole conditions list, and bridge.status() keeps the types it does not own (an InferenceRun's
    Succeeded, written by the runner meanwhile) from what it is given. The body's when the read fails."""
    if rec.has_status:
        try:
            stored = _lookup(rec.kind, rec.namespace, rec.name)
        except FinopsError:
            stored = None
        if stored is not None:
            return dict(stored.get("status") or {})
    return dict(body.get("status") or {})


def _write_status(patch: kopf.Patch, rec: bridge.Reconciliation, status: dict[str, Any]) -> None:
    if rec.has_status:  # kinds without a status in their CRD would have it pruned by the API server
        patch.status.update(status)


def _api_error(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return f"Kubernetes API: HTTP {status}: {getattr(exc, 'reason', exc)}" if status else f"{type(exc).__name__}: {exc}"


for _info in bridge.watched_kinds():
    _res = (_info.group, _info.version, _info.plural)
    kopf.on.resume(*_res, id="apply-resume")(apply)
    kopf.on.create(*_res, id="apply-create")(apply)
    kopf.on.update(*_res, id="apply-update")(apply)
    kopf.on.delete(*_res, id="delete", retries=10)(delete)
