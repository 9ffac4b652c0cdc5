"""The kopf bridge (operator/handlers.py, loaded as `kopf run` loads it) against kmock's Kubernetes emulator.

kopf runs in-process as an asyncio task, logged in to the emulator on 127.0.0.1; CloudEvents go to a
real HTTP sink on 127.0.0.1 (K_SINK). Cases:
- applying an ExporterScraperConfig -> io.finops.cr.applied (subject Kind/ns/name, data = the validated
  CR with defaults), a PingSource `<name>-exporter` owned by the CR (ownerReferences, cron '0 * * * *'),
  status Ready/Synced True with the schedule and its note;
- a ScraperConfig gets its own PingSource at its pollingInterval (12h30m -> every 12h, noted);
- changing the interval patches the PingSource and sends another applied event;
- invalid CRs (bad duration, wrong metricType, unknown field, missing Secret) -> Ready/Synced False
  naming the field, no event, no PingSource; the bridge keeps running and the missing Secret, once
  created, makes the CR Ready on retry;
- deleting a CR -> io.finops.cr.deleted and its PingSources gone.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import pytest_asyncio
from loopback_http import Reply, serve

from functions import bridge, events

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ROOT / "operator" / "handlers.py"
NS = "finops"
ESC = ("finops.krateo.io", "v1", "exporterscraperconfigs")
PS = "sources.knative.dev/v1/pingsources"
SUBJECT = "ExporterScraperConfig/finops/costs"
VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]

pytestmark = [pytest.mark.timeout(120)]


def _esc(name: str, interval: str = "1h", **exporter: Any) -> dict[str, Any]:
    return {
        "apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {
            "exporterConfig": {"api": {"path": "/costs.csv", "endpointRef": {"name": "cost-api", "namespace": NS}},
                               "metricType": "cost", "pollingInterval": interval, **exporter},
            "scraperConfig": {"tableName": "costs", "pollingInterval": interval,
                              "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}},
        },
    }


def _scraper(name: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {"tableName": "metrics", "pollingInterval": interval, "metricType": "generic",
                 "generic": {"metricName": "up", "valueColumnIndex": 0},
                 "api": {"path": "/metrics", "endpointRef": {"name": "cost-api", "namespace": NS}},
                 "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}},
    }


def _load_registry() -> kopf.OperatorRegistry:
    """Import operator/handlers.py into a fresh registry, as `kopf run operator/handlers.py` does."""
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        spec = importlib.util.spec_from_file_location("finops_bridge_handlers_under_test", HANDLERS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        kopf.set_default_registry(previous)
    return registry


class Cluster:
    """The emulator plus helpers that read it."""

    def __init__(self, emulator: kmock.KubernetesEmulator, sink: Any) -> None:
        self.k = emulator
        self.sink = sink

    def obj(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.k.objects[resource, NS, name]
        except KeyError:
            return None
        return None if found.deleted else dict(found.raw)

    def received(self, type_: str, subject: str) -> list[events.Event]:
        out = [events.from_http(s.headers, s.body) for s in list(self.sink.seen)]
        return [e for e in out if e.type == type_ and e.subject == subject]

    async def until(self, what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@pytest_asyncio.fixture
async def cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    with serve(Reply(202)) as sink:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            crs = [f"{i.group}/{i.version}/{i.plural}" for i in bridge.watched_kinds()]
            for res in ["v1/namespaces", "v1/secrets", "v1/events", PS,
                        "apiextensions.k8s.io/v1/customresourcedefinitions", *crs]:
                emulator.resources[res].verbs = set(VERBS)
                emulator.resources[res].namespaced = res != "v1/namespaces" and "customresource" not in res
            for info in bridge.watched_kinds():
                if info.has_status:
                    emulator.resources[f"{info.group}/{info.version}/{info.plural}"].subresources = {"status"}
            emulator.objects["v1/namespaces", None, NS] = {"metadata": {"name": NS}}
            emulator.objects["v1/secrets", NS, "cost-api"] = {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cost-api", "namespace": NS},
                "stringData": {"server-url": "http://127.0.0.1:9"}}
            emulator.objects["finops.krateo.io/v1/databaseconfigs", NS, "finops-db"] = {
                "apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig",
                "metadata": {"name": "finops-db", "namespace": NS, "uid": "uid-db", "resourceVersion": "1"},
                "spec": {"username": "finops", "passwordSecretRef": {"name": "cost-api", "namespace": NS, "key": "server-url"}}}
            url = str(server.url).rstrip("/")
            monkeypatch.setenv("FINOPS_KUBE_HOST", url)
            monkeypatch.setenv("K_SINK", sink.url)
            monkeypatch.setenv("FINOPS_BRIDGE_RETRY_SECONDS", "0.5")
            registry = _load_registry()
            stop, ready = threading.Event(), threading.Event()
            errors: list[BaseException] = []

            def run() -> None:  # its own loop: kopf cancels the tasks of its loop when it stops
                try:
                    asyncio.run(kopf.operator(registry=registry, clusterwide=True, standalone=True,
                                              stop_flag=stop, ready_flag=ready))
                except BaseException as exc:  # noqa: BLE001 - reported by the fixture
                    errors.append(exc)

            thread = threading.Thread(target=run, name="kopf", daemon=True)
            thread.start()
            await asyncio.to_thread(ready.wait, 20)
            try:
                yield Cluster(emulator, sink)
            finally:
                stop.set()
                await asyncio.to_thread(thread.join, 20)
            assert not thread.is_alive(), "kopf did not stop"
            assert not errors, errors


async def _create(c: Cluster, resource: tuple[str, str, str], body: dict[str, Any]) -> None:
    group, version, plural = resource
    resp = await c.k.post(f"/apis/{group}/{version}/namespaces/{NS}/{plural}", json=body)
    assert resp.status in (200, 201), await resp.text()


async def _patch(c: Cluster, resource: tuple[str, str, str], name: str, body: dict[str, Any]) -> None:
    group, version, plural = resource
    resp = await c.k.patch(f"/apis/{group}/{version}/namespaces/{NS}/{plural}/{name}", json=body,
                           headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status == 200, await resp.text()


async def _delete(c: Cluster, resource: tuple[str, str, str], name: str) -> None:
    group, version, plural = resource
    resp = await c.k.delete(f"/apis/{group}/{version}/namespaces/{NS}/{plural}/{name}")
    assert resp.status in (200, 202), await resp.text()


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


@pytest.mark.asyncio
async def test_apply_change_delete_produce_events_pingsources_and_status(cluster: Cluster) -> None:
    c = cluster
    res = "finops.krateo.io/v1/exporterscraperconfigs"
    await _create(c, ESC, _esc("costs"))
    applied = await c.until("cr.applied", lambda: c.received(events.CR_APPLIED, SUBJECT))
    ev = applied[0]
    assert ev.subject == "ExporterScraperConfig/finops/costs"
    assert ev.extensions["kind"] == "ExporterScraperConfig"
    assert ev.data["spec"]["exporterConfig"]["api"]["verb"] == "GET"  # validated: defaults filled in
    assert ev.data["spec"]["exporterConfig"]["pollingInterval"] == "1h"
    assert "status" not in ev.data

    ps = await c.until("PingSource", lambda: c.obj(PS, "costs-exporter"))
    assert ps["spec"]["schedule"] == "0 * * * *"
    assert ps["metadata"]["ownerReferences"] == [{
        "apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig", "name": "costs",
        "uid": "uid-costs", "controller": True, "blockOwnerDeletion": True}]
    assert ps["spec"]["sink"]["ref"]["kind"] == "Broker"
    obj = await c.until("Ready", lambda: _condition(c.obj(res, "costs"), "Ready").get("status") == "True"
                        and c.obj(res, "costs"))
    assert _condition(obj, "Synced")["reason"] == "ReconcileSuccess"
    assert obj["status"]["schedules"][0]["schedule"] == "0 * * * *"
    assert "no separate timer" in obj["status"]["schedules"][0]["note"]

    # a change: a new interval patches the PingSource and announces the CR again
    changed = copy.deepcopy(_esc("costs", "12h30m"))
    await _patch(c, ESC, "costs", {"spec": changed["spec"], "metadata": {"generation": 2}})
    await c.until("second applied", lambda: len(c.received(events.CR_APPLIED, SUBJECT)) >= 2)
    ps = await c.until("patched PingSource", lambda: (c.obj(PS, "costs-exporter") or {}).get("spec", {})
                       .get("schedule") == "0 */12 * * *" and c.obj(PS, "costs-exporter"))
    assert "running every 12h" in ps["metadata"]["annotations"]["finops.krateo.io/schedule-note"]
    await c.until("schedule note in status", lambda: "running every 12h" in str(
        (c.obj(res, "costs") or {}).get("status", {}).get("schedules")))

    await _delete(c, ESC, "costs")
    deleted = await c.until("cr.deleted", lambda: c.received(events.CR_DELETED, SUBJECT))
    assert deleted[0].subject == "ExporterScraperConfig/finops/costs"
    await c.until("PingSource removed", lambda: c.obj(PS, "costs-exporter") is None)
    await c.until("CR gone (finalizer released)", lambda: c.obj(res, "costs") is None)


@pytest.mark.asyncio
async def test_scraperconfig_gets_its_own_schedule(cluster: Cluster) -> None:
    c = cluster
    await _create(c, ("finops.krateo.io", "v1", "scraperconfigs"), _scraper("metrics", "5s"))
    ps = await c.until("PingSource", lambda: c.obj(PS, "metrics-scraper"))
    assert ps["spec"]["schedule"] == "* * * * *"
    assert ps["spec"]["ceOverrides"]["extensions"]["finopstarget"] == "scraper"
    assert "one-minute cron floor" in ps["metadata"]["annotations"]["finops.krateo.io/schedule-note"]
    assert ps["metadata"]["ownerReferences"][0]["kind"] == "ScraperConfig"
    obj = await c.until("status", lambda: _condition(c.obj("finops.krateo.io/v1/scraperconfigs", "metrics"),
                                                     "Ready") and c.obj("finops.krateo.io/v1/scraperconfigs", "metrics"))
    assert "one-minute cron floor" in _condition(obj, "Ready")["message"]


INVALID = [
    pytest.param("bad-duration", {"pollingInterval": "1x"}, "spec.exporterConfig.pollingInterval", id="bad-duration"),
    pytest.param("bad-type", {"metricType": "money"}, "spec.exporterConfig.metricType", id="wrong-metric-type"),
    pytest.param("unknown", {"colour": "blue"}, "spec.exporterConfig.colour", id="unknown-field"),
    pytest.param("no-secret", {"api": {"path": "/x", "endpointRef": {"name": "nope", "namespace": NS}}},
                 "spec.exporterConfig.api.endpointRef", id="missing-secret"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "exporter", "field"), INVALID)
async def test_invalid_crs_get_a_condition_naming_the_field(cluster: Cluster, name: str, exporter: dict[str, Any],
                                                            field: str) -> None:
    c = cluster
    res = "finops.krateo.io/v1/exporterscraperconfigs"
    body = _esc(name)
    body["spec"]["exporterConfig"].update(exporter)
    await _create(c, ESC, body)
    obj = await c.until("Ready False", lambda: _condition(c.obj(res, name), "Ready").get("status") == "False"
                        and c.obj(res, name))
    ready, synced = _condition(obj, "Ready"), _condition(obj, "Synced")
    assert field in ready["message"] and field in synced["message"]
    assert (ready["reason"], synced["reason"]) == ("Unavailable", "ReconcileError")
    assert c.obj(PS, f"{name}-exporter") is None
    assert not c.received(events.CR_APPLIED, f"ExporterScraperConfig/{NS}/{name}")
    if name == "no-secret":  # retried: once the Secret exists the CR becomes Ready
        c.k.objects["v1/secrets", NS, "nope"] = {"apiVersion": "v1", "kind": "Secret",
                                                 "metadata": {"name": "nope", "namespace": NS}, "data": {}}
        await c.until("Ready after the Secret appeared",
                      lambda: _condition(c.obj(res, name), "Ready").get("status") == "True")
        await c.until("applied after retry", lambda: c.received(events.CR_APPLIED, f"ExporterScraperConfig/{NS}/{name}"))
        assert c.obj(PS, f"{name}-exporter") is not None
    # the bridge is still alive: a valid CR is handled after the invalid one
    await _create(c, ESC, _esc(f"{name}-ok"))
    await c.until("valid CR handled", lambda: c.obj(PS, f"{name}-ok-exporter"))


def test_handlers_module_is_not_a_package() -> None:
    """kopf loads operator/handlers.py by path: operator/ must stay a plain folder (stdlib `operator`)."""
    assert not (HANDLERS.parent / "__init__.py").exists()
