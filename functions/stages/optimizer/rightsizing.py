"""Day-2 rightsizing: Krateo's per-resource windows for a composition, read through the handler its
`<db-config>-endpoint` Secret names (what an UPDATE admission proposes to the policy)."""

from __future__ import annotations

from typing import Any

from functions.clients import endpoint as endpoint_client
from functions.clients import kube
from functions.errors import FinopsError, Unavailable
from functions.models import optimizer as model
from functions.stages.optimizer.deps import Deps
from functions.stages.optimizer.windows import windows


def rightsizing(obj: dict[str, Any], deps: Deps) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Krateo's per-resource windows for a composition, and a note for each resource without data.

    None (nothing to write, spec.optimization kept) when the composition names no resource yet or a
    managed VM cannot be resolved: writing what is left would erase the windows of the others.
    """
    ids, notes = resource_ids(obj, deps)
    if notes:
        return None, notes + ["spec.optimization kept as it is until every managed VM resolves"]
    if not ids:
        return None, ["no resources to right-size (annotation finops.krateo.io/resource-ids or status.managed)"]
    source = model.usage_source(obj)
    endpoint = _handler_endpoint(source, deps)
    items: list[dict[str, Any]] = []
    failed: list[str] = []
    for rid in ids:
        try:
            found = windows(endpoint, source.table, rid, deps)
        except FinopsError as exc:
            failed.append(f"{rid}: {exc.message}")
            continue
        if not found:
            notes.append(f"{rid}: no usage data in {source.table}")
        items.extend(found)
    if failed:  # Krateo would write what it got (even "[]"): a passing outage would erase good windows
        raise Unavailable(f"usage not readable, spec.optimization kept as it is: {'; '.join(failed)}")
    return items, notes


def resource_ids(obj: dict[str, Any], deps: Deps) -> tuple[list[str], list[str]]:
    """The annotation's ids, else the managed VMs' `status.id` (read from the API, as Krateo's policy does)."""
    listed = model.annotations_of(obj).get(model.RESOURCE_IDS)
    if listed is not None:
        return model.split_ids(listed), []
    ids: list[str] = []
    notes: list[str] = []
    for vm in model.managed_vms(obj):
        body = deps.objects.get_resource(vm["apiVersion"], vm["resource"], vm["namespace"], vm["name"]) if deps.objects else None
        rid = ((body or {}).get("status") or {}).get("id")
        if isinstance(rid, str) and rid:
            ids.append(rid)
        else:
            notes.append(f"virtualmachines {vm['namespace']}/{vm['name']}: no status.id")
    return list(dict.fromkeys(ids)), notes


def _handler_endpoint(source: model.UsageSource, deps: Deps) -> endpoint_client.Endpoint:
    """The composition's `<db-config>-endpoint` Secret: server-url, username, password (Krateo's keys)."""
    return kube.endpoint_from_secret(deps.reader, source.secret_namespace, source.secret_name,
                                     "spec.metricExporter.scraperDatabaseConfigRef",
                                     {"server-url": deps.settings.dbhandler_url} if deps.settings.dbhandler_url else None)
