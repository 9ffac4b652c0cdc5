"""The optimizer target answers real AdmissionReview v1 bodies over HTTP, and never blocks one.

Set-up (module): a real database handler (embedded) holding usage series of two VMs in `finops_res`,
Krateo's `cyclic` notebook (crds/examples) and a carbon forecast table; the composition's endpoint
Secret in the local store; the optimizer under functions-framework on 127.0.0.1, policies on the
embedded OPA engine.

Cases:
- UPDATE (day-2): the decoded JSONPatch adds `/spec/optimization` as a JSON *string* of Krateo's
  objects; each window equals the moving-window module's answer on the same samples; the policy clamps
  a shrink beyond 80 % (warning says so); a resource without data is left out (warning); `uid` echoed;
  a repeated review answers the same patch;
- CREATE (day-1): the placement annotations name the allowed region whose forecast has the trough,
  a start inside it, before the deadline; no allowed-regions annotation -> no patch; a bad duration ->
  no patch and a warning naming the annotation;
- a kind the policy does not list, DELETE, malformed bodies (not JSON, no request, no uid, wrong kind):
  allowed, no patch, HTTP 200, uid echoed when there is one;
- an unreachable database handler, one that never answers, a missing endpoint Secret: allowed, no
  patch (the previous spec.optimization is kept, where Krateo writes "[]"), within the budget;
- the day-2 ping (a CloudEvent) is answered with a CloudEvent (Knative's broker fails other bodies);
- GET /optimize keeps Krateo's contract (one object, the caller's Basic credentials forwarded);
  missing parameters -> 400 naming them; no credentials -> 401 (Basic) before anything is read;
- over plain HTTP (this test's server, the local stack) reviews and pings carry the caller token
  (tests/dbhandler_server.py AUTH); over TLS the API server's reviews need none (the Containerfile test);
- an optimizer whose policies cannot load still answers allowed (fail open).
"""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import AUTH, DbHandler, start_dbhandler, start_function, stop_process

from functions import events
from functions.algorithms import moving_window
from functions.clients import kube
from functions.local.supervisor import free_port

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "functions" / "main.py"
BUDGET_S = 2.0
VM1 = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
VM2 = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm2"
VM10 = VM1 + "0"  # Krateo's LIKE would mix it into vm1's series
GONE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/gone"
END = datetime(2026, 11, 1, tzinfo=UTC)


def series(busy: float, idle: float, seed: int) -> list[tuple[datetime, float]]:
    """Three days of 15-minute CPU %: busy 08:00-18:00 UTC, idle otherwise, a little noise."""
    rng = random.Random(seed)
    start = END - timedelta(days=3)
    out = []
    for i in range(3 * 96):
        t = start + timedelta(minutes=15 * i)
        level = busy if 8 <= t.hour < 18 else idle
        out.append((t, round(max(0.0, level + rng.uniform(-2, 2)), 3)))
    return out


SERIES = {VM1: series(75.0, 30.0, 1), VM2: series(4.0, 1.0, 2), VM10: series(99.0, 99.0, 3)}


def expected(rid: str) -> dict[str, Any]:
    samples = [moving_window.Sample(t, v) for t, v in SERIES[rid]]
    return moving_window.optimize(rid, "Percentage CPU", "Percent", samples, "fixed")


def records(rid: str) -> list[dict[str, Any]]:
    return [{"labels": {"ResourceId": rid, "metricName": "Percentage CPU", "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "average": str(v), "unit": "Percent"}, "value": v, "timestamp": 1700000000} for t, v in SERIES[rid]]


class Stack:
    def __init__(self, handler: DbHandler, url: str, state: Path) -> None:
        self.handler, self.url, self.state = handler, url, state

    def review(self, operation: str, obj: dict[str, Any] | None, uid: str = "uid-1") -> tuple[dict[str, Any], float]:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": uid, "kind": {"group": "composition.krateo.io", "version": "v1-0-0", "kind": "VmAzure"},
                            "operation": operation, "namespace": "demo", "name": "vm-composition", "object": obj}}
        return self.post(json.dumps(body).encode())

    def post(self, body: bytes) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        answer = httpx.post(self.url + "/", content=body, headers={"Content-Type": "application/json", **AUTH}, timeout=30)
        elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        return answer.json(), elapsed


def composition(annotations: dict[str, str] | None = None, db_config: str = "finops-database-handler",
                api_version: str = "composition.krateo.io/v1-0-0", kind: str = "VmAzure") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "vm-composition", "namespace": "demo", "annotations": annotations or {}},
            "spec": {"global": {"tableName": "finops"},
                     "metricExporter": {"scraperDatabaseConfigRef": {"name": db_config, "namespace": "krateo-system"}}}}


def endpoint_secret(state: Path, name: str, url: str) -> None:
    data = {"server-url": url, "username": "finops", "password": "s3cret"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "krateo-system"},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    kube.write_json(kube.resource_path(state, "Secret", "krateo-system", name), secret)


def silent_server() -> tuple[int, socket.socket]:
    """Accepts connections and never answers (a database handler stuck in a query)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return int(sock.getsockname()[1]), sock


@pytest.fixture(scope="module", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("optimizer")
    handler = start_dbhandler(tmp)
    silent_port, silent = silent_server()
    process = None
    try:
        cyclic = yaml.safe_load((ROOT / "crds" / "examples" / "notebook-cyclic.yaml").read_text())["spec"]["inline"]
        assert httpx.post(f"{handler.url}/compute/cyclic/upload?overwrite=true", content=cyclic.encode(),
                          headers=handler.auth()).json() == {"result": True}
        for rid in SERIES:
            assert handler.upload(records(rid), {"table": "finops_res", "type": "resource"}).status_code == 200
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        handler.sql('CREATE TABLE carbon_forecast (region TEXT, "timestamp" TIMESTAMP, intensity DOUBLE)')
        rows = []
        for h in range(-2, 48):
            t = now + timedelta(hours=h)
            rows += [["westeurope", t.isoformat(), 300.0], ["northeurope", t.isoformat(), 60.0 if 6 <= h < 10 else 250.0],
                     ["eastus", t.isoformat(), 10.0]]  # cleanest, but never allowed below
        for row in rows:
            handler.sql('INSERT INTO carbon_forecast (region, "timestamp", intensity) VALUES (?, ?, ?)', row)
        state = tmp / "state"
        endpoint_secret(state, "finops-database-handler-endpoint", handler.url)
        endpoint_secret(state, "down-endpoint", f"http://127.0.0.1:{free_port()}")
        endpoint_secret(state, "stuck-endpoint", f"http://127.0.0.1:{silent_port}")
        port = free_port()
        env = {"FINOPS_STATE_DIR": str(state), "FINOPS_KUBE": "local", "FINOPS_OPTIMIZER_BUDGET_S": str(BUDGET_S),
               "FINOPS_DBHANDLER_URL": handler.url,  # the configured handler: GET /optimize may name it
               "FINOPS_CARBON_DB_URL": handler.url, "FINOPS_CARBON_DB_USER": "finops", "FINOPS_CARBON_DB_PASSWORD": "s3cret"}
        process = start_function("optimizer", port, env, tmp / "optimizer.log", source=SOURCE)
        yield Stack(handler, f"http://127.0.0.1:{port}", state)
    finally:
        if process is not None:
            stop_process(process)
        silent.close()
        handler.stop()


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    assert response["allowed"] is True
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return list(json.loads(base64.b64decode(response["patch"])))


def assert_allowed_unchanged(answer: dict[str, Any], uid: str) -> None:
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == uid and answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]


def test_update_writes_krateo_windows_as_a_string(stack: Stack) -> None:
    obj = composition({"finops.krateo.io/resource-ids": f"{VM1}, {VM2} {GONE}"})
    answer, _ = stack.review("UPDATE", obj, uid="u-update")
    assert answer["response"]["uid"] == "u-update"
    ops = patch_of(answer)
    assert [(op["op"], op["path"]) for op in ops] == [("add", "/spec/optimization")]
    assert isinstance(ops[0]["value"], str), "spec.optimization stays a JSON string (Krateo's frontends)"
    items = {i["resourceid"]: i for i in json.loads(ops[0]["value"])}
    assert set(items) == {VM1, VM2}, "vm10 is never mixed in; the resource without data is left out"
    assert items[VM1] == expected(VM1)
    assert -80 < items[VM1]["optimization"]["resourceDelta"] < -5
    raw_vm2 = expected(VM2)["optimization"]["resourceDelta"]
    assert raw_vm2 < -80 and items[VM2]["optimization"]["resourceDelta"] == -80, "the policy's floor"
    assert {k: items[VM2]["optimization"][k] for k in ("from", "to")} == {k: expected(VM2)["optimization"][k] for k in ("from", "to")}
    warnings = answer["response"]["warnings"]  # ARM ids shortened to the VM name, as the frontends show them
    assert any(w.startswith("gone: no usage data") for w in warnings), warnings
    assert any(w.startswith("vm2 Percentage CPU: resourceDelta") and "-80" in w for w in warnings), warnings
    again, _ = stack.review("UPDATE", obj, uid="u-update-2")
    assert patch_of(again) == ops and again["response"]["uid"] == "u-update-2"


def test_create_places_the_job_in_the_cleanest_allowed_window(stack: Stack) -> None:
    obj = composition({"finops.krateo.io/allowed-regions": "westeurope,northeurope",
                       "finops.krateo.io/duration": "2h", "finops.krateo.io/deadline": "24h"})
    before = datetime.now(UTC)
    answer, _ = stack.review("CREATE", obj, uid="u-create")
    ops = patch_of(answer)
    values = {op["path"]: op["value"] for op in ops}
    assert values["/metadata/annotations/finops.krateo.io~1placement-region"] == "northeurope"
    start = datetime.fromisoformat(values["/metadata/annotations/finops.krateo.io~1placement-start"].replace("Z", "+00:00"))
    trough = before.replace(minute=0, second=0, microsecond=0)
    assert trough + timedelta(hours=6) <= start <= trough + timedelta(hours=8), start
    assert start >= before - timedelta(hours=1) and start + timedelta(hours=2) <= before + timedelta(hours=24, minutes=1)
    assert "forecast" in values["/metadata/annotations/finops.krateo.io~1placement-message"] or values


@pytest.mark.parametrize(("annotations", "warning"), [
    ({}, "allowed-regions"),
    ({"finops.krateo.io/allowed-regions": "westeurope", "finops.krateo.io/duration": "two hours"}, "finops.krateo.io/duration"),
], ids=["nothing-asked", "bad-duration"])
def test_create_without_a_valid_request_is_left_alone(stack: Stack, annotations: dict[str, str], warning: str) -> None:
    answer, _ = stack.review("CREATE", composition(annotations), uid="u-c2")
    assert_allowed_unchanged(answer, "u-c2")
    assert warning in " ".join(answer["response"]["warnings"])


def test_unlisted_kinds_and_deletes_pass_unchanged(stack: Stack) -> None:
    other = composition({"finops.krateo.io/resource-ids": VM1}, api_version="composition.krateo.io/v9", kind="Other")
    answer, _ = stack.review("UPDATE", other, uid="u-other")
    assert_allowed_unchanged(answer, "u-other")
    answer, _ = stack.review("DELETE", None, uid="u-delete")
    assert_allowed_unchanged(answer, "u-delete")


@pytest.mark.parametrize(("body", "uid"), [
    (b"{not json", ""),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', ""),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "UPDATE"}}', ""),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Foo", "request": {"uid": "u-foo", "operation": "UPDATE"}}', "u-foo"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-op", "operation": "PATCH"}}', "u-op"),
    (b"[]", ""),
], ids=["not-json", "no-request", "no-uid", "wrong-kind", "bad-operation", "array"])
def test_malformed_reviews_are_allowed_without_a_patch(stack: Stack, body: bytes, uid: str) -> None:
    answer, elapsed = stack.post(body)
    assert_allowed_unchanged(answer, uid)
    assert "malformed" in answer["response"]["warnings"][0]
    assert elapsed < BUDGET_S + 1


@pytest.mark.parametrize("db_config", ["down", "stuck", "missing"])
def test_an_unusable_database_handler_never_blocks(stack: Stack, db_config: str) -> None:
    obj = composition({"finops.krateo.io/resource-ids": VM1}, db_config=db_config)
    answer, elapsed = stack.review("UPDATE", obj, uid=f"u-{db_config}")
    assert elapsed < BUDGET_S + 1, "answered inside the budget, well inside the webhook's 5 s timeout"
    assert_allowed_unchanged(answer, f"u-{db_config}")  # Krateo would write "[]" over good windows
    expected = {"down": "usage not readable", "stuck": f"no decision within {BUDGET_S:g} s", "missing": "not found"}
    assert expected[db_config] in answer["response"]["warnings"][0], answer["response"]["warnings"]


def test_get_optimize_keeps_krateo_contract(stack: Stack) -> None:
    params = {"resource_name": VM1, "table_name": "finops_res", "dbhandler_url": f"{stack.handler.url}/compute"}
    answer = httpx.get(f"{stack.url}/optimize", params=params, headers={**stack.handler.auth(), "Accept": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == expected(VM1)
    refused = httpx.get(f"{stack.url}/optimize", params=params, headers=stack.handler.auth("finops", "wrong"), timeout=30)
    assert refused.status_code == 401 and "credentials" in refused.json()["error"]  # the handler refused them
    missing = httpx.get(f"{stack.url}/optimize", params={"resource_name": VM1}, headers=stack.handler.auth(), timeout=30)
    assert missing.status_code == 400
    assert {e["loc"] for e in missing.json()["errors"]} == {"table_name", "dbhandler_url"}
    anonymous = httpx.get(f"{stack.url}/optimize", params=params, timeout=30)
    assert anonymous.status_code == 401 and "Basic" in anonymous.text, anonymous.text
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")


def test_an_optimizer_without_policies_fails_open(tmp_path: Path) -> None:
    port = free_port()
    env = {"FINOPS_STATE_DIR": str(tmp_path), "FINOPS_POLICY_DIR": str(tmp_path / "no-policies")}
    process = start_function("optimizer", port, env, tmp_path / "optimizer.log", source=SOURCE)
    try:
        stack = Stack(None, f"http://127.0.0.1:{port}", tmp_path)  # type: ignore[arg-type]
        answer, _ = stack.review("UPDATE", composition({"finops.krateo.io/resource-ids": VM1}), uid="u-nopolicy")
        assert_allowed_unchanged(answer, "u-nopolicy")
        assert "polic" in answer["response"]["warnings"][0]
    finally:
        stop_process(process)


def test_the_day2_ping_is_answered_with_a_cloudevent(stack: Stack) -> None:
    """Knative's broker fails a delivery answered with a body that is not a CloudEvent: the ping's answer is one."""
    ping = events.new(events.PING, "/apis/v1/namespaces/finops/pingsources/optimizer-day2",
                      data={"compositions": [{"apiVersion": "composition.krateo.io/v1-0-0", "resource": "vmazures"}]},
                      finopstarget="optimizer")
    headers, body = events.to_binary(ping)
    assert httpx.post(stack.url + "/", headers=headers, content=body, timeout=30).status_code == 401  # no token
    answer = httpx.post(stack.url + "/", headers={**headers, **AUTH}, content=body, timeout=30)
    assert answer.status_code == 200
    reply = events.from_http(dict(answer.headers), answer.content)
    assert reply.type == events.OPTIMIZATION_LABELLED
    assert reply.data["labelled"] == 0 and "FINOPS_KUBE=cluster" in reply.data["message"]
