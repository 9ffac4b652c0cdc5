"""The kopf bridge against a real Kubernetes API server (with Knative Eventing's PingSource CRD).

Runs only when FINOPS_TEST_KUBECONFIG names a kubeconfig (no API server can be installed on the build
machines). Cases: our CRDs apply; an ExporterScraperConfig in a fresh namespace gets its
io.finops.cr.applied event at a sink on 127.0.0.1, its PingSource owned by the CR's real uid, and
Ready=True; deleting it sends io.finops.cr.deleted. The namespace is removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from loopback_http import Reply, serve
from test_bridge_runs_against_kubernetes_emulator import _esc, _load_registry

from functions import events

ROOT = Path(__file__).resolve().parent.parent
KUBECONFIG = os.environ.get("FINOPS_TEST_KUBECONFIG", "")

pytestmark = [
    pytest.mark.skipif(not KUBECONFIG, reason="FINOPS_TEST_KUBECONFIG is not set: no Kubernetes API server here "
                                              "(the bridge is tested against kmock's emulator instead)"),
    pytest.mark.timeout(300),
]


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_bridge_on_a_real_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client, config, utils
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(KUBECONFIG)
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        try:
            utils.create_from_dict(api, yaml.safe_load(crd.read_text(encoding="utf-8")))
        except utils.FailToCreateError as exc:
            if not all(e.status == 409 for e in exc.api_exceptions):
                raise
    objects = client.CustomObjectsApi(api)
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition("pingsources.sources.knative.dev")
    except ApiException:
        pytest.skip("Knative Eventing (PingSource CRD) is not installed in that cluster")
    ns = f"finops-test-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    monkeypatch.delenv("FINOPS_KUBE_HOST", raising=False)
    monkeypatch.setenv("FINOPS_BRIDGE_RETRY_SECONDS", "2")
    try:
        with serve(Reply(202)) as sink:
            monkeypatch.setenv("K_SINK", sink.url)
            core.create_namespaced_secret(ns, {"metadata": {"name": "cost-api"}, "stringData": {"server-url": "http://x"}})
            objects.create_namespaced_custom_object("finops.krateo.io", "v1", ns, "databaseconfigs", {
                "apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig", "metadata": {"name": "finops-db"},
                "spec": {"username": "u", "passwordSecretRef": {"name": "cost-api", "namespace": ns, "key": "server-url"}}})
            cr = _esc("costs")
            cr["metadata"] = {"name": "costs", "namespace": ns}
            for part in ("exporterConfig", "scraperConfig"):
                for ref in ("api", "scraperDatabaseConfigRef"):
                    node = cr["spec"][part].get(ref)
                    if isinstance(node, dict):
                        (node.get("endpointRef") or node)["namespace"] = ns
            stop, ready = threading.Event(), threading.Event()
            registry = _load_registry()
            thread = threading.Thread(target=lambda: asyncio.run(kopf.operator(
                registry=registry, namespaces=[ns], standalone=True, stop_flag=stop, ready_flag=ready)), daemon=True)
            thread.start()
            ready.wait(60)
            try:
                created = objects.create_namespaced_custom_object("finops.krateo.io", "v1", ns, "exporterscraperconfigs", cr)

                def received(type_: str) -> list[events.Event]:
                    return [e for e in (events.from_http(s.headers, s.body) for s in list(sink.seen)) if e.type == type_]

                _until("cr.applied", lambda: received(events.CR_APPLIED))
                ps = _until("PingSource", lambda: objects.list_namespaced_custom_object(
                    "sources.knative.dev", "v1", ns, "pingsources")["items"])
                assert ps[0]["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
                _until("Ready", lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in (
                    objects.get_namespaced_custom_object("finops.krateo.io", "v1", ns, "exporterscraperconfigs", "costs")
                    .get("status", {}).get("conditions", []))))
                objects.delete_namespaced_custom_object("finops.krateo.io", "v1", ns, "exporterscraperconfigs", "costs")
                _until("cr.deleted", lambda: received(events.CR_DELETED))
            finally:
                stop.set()
                thread.join(30)
    finally:
        core.delete_namespace(ns)
