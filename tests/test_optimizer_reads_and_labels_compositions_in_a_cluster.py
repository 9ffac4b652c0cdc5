"""The optimizer's cluster side against kmock's Kubernetes emulator (the real `kubernetes` client on 127.0.0.1).

Cases:
- the periodic day-2 ping labels every composition of the listed kinds `optimization=<epoch seconds>`
  (Krateo's CronJob, as one PingSource), in every namespace or only the one named; objects of other
  kinds are untouched; a second ping bumps the label again;
- a composition's managed VMs resolve to their Azure ids through `status.id` (Krateo's reading); a VM
  without status.id or missing is named in a note, not fatal;
- a malformed ping is refused naming the field; without the Kubernetes API (local stack) a ping has
  nothing to label and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio

from functions.clients import kube
from functions.clients.policy import EmbeddedOpa
from functions.errors import InvalidInput
from functions.settings.optimizer import OptimizerSettings
from functions.stages.optimizer import label, rightsizing
from functions.stages.optimizer.deps import Deps

# Krateo's versions (v1-0-0, v1api20220301) are not Kubernetes-style: kmock wants them spelled out
VMAZURES = kmock.resource("composition.krateo.io", "v1-0-0", "vmazures")
OTHERS = kmock.resource("composition.krateo.io", "v1-0-0", "others")
VMS = kmock.resource("compute.azure.com", "v1api20220301", "virtualmachines")
VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
VM1 = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
KINDS = [{"apiVersion": "composition.krateo.io/v1-0-0", "resource": "vmazures"}]

pytestmark = [pytest.mark.timeout(60)]


def _composition(kind: str, ns: str, name: str, managed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "composition.krateo.io/v1-0-0", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "1", "labels": {"app": "x"}},
            "spec": {}, "status": {"managed": managed or []}}


@pytest_asyncio.fixture(name="api")
async def api_fixture() -> AsyncIterator[tuple[kmock.KubernetesEmulator, kube.KubeObjects]]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        for res in (VMAZURES, OTHERS, VMS):
            emulator.resources[res].verbs = set(VERBS)
            emulator.resources[res].namespaced = True
        emulator.objects[VMAZURES, "demo", "c1"] = _composition("VmAzure", "demo", "c1")
        emulator.objects[VMAZURES, "team-b", "c2"] = _composition("VmAzure", "team-b", "c2")
        emulator.objects[OTHERS, "demo", "o1"] = _composition("Other", "demo", "o1")
        emulator.objects[VMS, "demo", "vm1"] = {"apiVersion": "compute.azure.com/v1api20220301", "kind": "VirtualMachine",
                                                "metadata": {"name": "vm1", "namespace": "demo"}, "status": {"id": VM1}}
        emulator.objects[VMS, "demo", "vm-pending"] = {"apiVersion": "compute.azure.com/v1api20220301", "kind": "VirtualMachine",
                                                       "metadata": {"name": "vm-pending", "namespace": "demo"}, "status": {}}
        yield emulator, kube.KubeObjects(kube.KubeApiReader(str(server.url).rstrip("/")))


def _labels(emulator: kmock.KubernetesEmulator, res: kmock.resource, ns: str, name: str) -> dict[str, str]:
    return dict(emulator.objects[res, ns, name].raw["metadata"].get("labels") or {})


@pytest.mark.asyncio
async def test_the_ping_labels_every_listed_composition(api: tuple[kmock.KubernetesEmulator, kube.KubeObjects]) -> None:
    emulator, objects = api
    first = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    out = await asyncio.to_thread(label.handle, {"compositions": KINDS}, objects, first)
    assert out["labelled"] == 2 and sorted(out["compositions"]) == ["vmazures/demo/c1", "vmazures/team-b/c2"]
    for ns, name in (("demo", "c1"), ("team-b", "c2")):
        assert _labels(emulator, VMAZURES, ns, name) == {"app": "x", "optimization": str(int(first.timestamp()))}
    assert "optimization" not in _labels(emulator, OTHERS, "demo", "o1")
    later = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    only_demo = [{**KINDS[0], "namespace": "demo"}]
    out = await asyncio.to_thread(label.handle, {"compositions": only_demo}, objects, later)
    assert out["compositions"] == ["vmazures/demo/c1"]
    assert _labels(emulator, VMAZURES, "demo", "c1")["optimization"] == str(int(later.timestamp()))
    assert _labels(emulator, VMAZURES, "team-b", "c2")["optimization"] == str(int(first.timestamp()))


@pytest.mark.asyncio
async def test_managed_vms_resolve_to_their_azure_ids(api: tuple[kmock.KubernetesEmulator, kube.KubeObjects], tmp_path: Path) -> None:
    _, objects = api
    managed = [{"apiVersion": "compute.azure.com/v1api20220301", "resource": "virtualmachines", "name": n, "namespace": "demo"}
               for n in ("vm1", "vm-pending", "vm-gone")]
    managed.append({"apiVersion": "network.azure.com/v1", "resource": "networkinterfaces", "name": "nic", "namespace": "demo"})
    deps = Deps(settings=OptimizerSettings(), reader=kube.LocalReader(tmp_path), policy=EmbeddedOpa(), objects=objects)
    ids, notes = await asyncio.to_thread(rightsizing.resource_ids, _composition("VmAzure", "demo", "c1", managed), deps)
    assert ids == [VM1]
    assert notes == ["virtualmachines demo/vm-pending: no status.id", "virtualmachines demo/vm-gone: no status.id"]


@pytest.mark.parametrize("data", [None, {}, {"compositions": []}, {"compositions": [{"resource": "vmazures"}]}],
                         ids=["none", "empty", "no-kinds", "no-apiVersion"])
def test_a_malformed_ping_is_refused_naming_the_field(data: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        label.handle(data, None, datetime.now(UTC))
    assert err.value.errors and err.value.errors[0].loc.startswith("data.compositions")


def test_without_the_kubernetes_api_a_ping_has_nothing_to_label() -> None:
    out = label.handle({"compositions": KINDS}, None, datetime.now(UTC))
    assert out["labelled"] == 0 and "FINOPS_KUBE=cluster" in out["message"]
