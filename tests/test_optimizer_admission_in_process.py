"""The optimizer's admission path in-process (the real policy engine, the local store): its own plumbing.

Cases:
- a dry-run review (kubectl diff, --dry-run=server) announces nothing; the same review for real emits
  io.finops.optimization.skipped with the reason;
- events wait in a bounded backlog: with the sink stuck, extra events are dropped (logged), the
  admission still answers at once;
- concurrent admissions needing the same window compute it once (single flight) and all get it; a
  failed computation reaches every waiter and is not cached;
- a composition whose managed VM cannot be resolved, or that names no resource, gets no patch
  (spec.optimization kept). (The budget against a handler that never answers is tested end to end in
  test_optimizer_webhook_answers_admission_reviews.py.)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from functions import events
from functions.clients import kube
from functions.clients.policy import EmbeddedOpa
from functions.errors import Unavailable
from functions.settings.optimizer import OptimizerSettings
from functions.stages.optimizer import admission
from functions.stages.optimizer.deps import Deps, WindowCache

POLICY = EmbeddedOpa(Path(__file__).resolve().parents[1] / "policies")


def _deps(tmp_path: Path, **kwargs: Any) -> Deps:
    return Deps(settings=OptimizerSettings(budget_s=kwargs.pop("budget_s", 2.0)), reader=kube.LocalReader(tmp_path),
                      policy=POLICY, **kwargs)


def _body(obj: dict[str, Any], dry_run: bool = False, operation: str = "UPDATE") -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u1", "operation": operation, "dryRun": dry_run, "object": obj}}).encode()


def _vm_azure(**extra: Any) -> dict[str, Any]:
    return {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure",
            "metadata": {"name": "c", "namespace": "demo", "annotations": {"finops.krateo.io/resource-ids": "/subscriptions/s/vm1"}},
            "spec": {"metricExporter": {"scraperDatabaseConfigRef": {"name": "nowhere", "namespace": "demo"}}}, **extra}


def _wait_for(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_dry_run_announces_nothing(tmp_path: Path) -> None:
    sent: list[events.Event] = []
    deps = _deps(tmp_path, publish=sent.append)
    answer = admission.handle(_body(_vm_azure(), dry_run=True), deps)
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]
    assert "demo/nowhere-endpoint not found" in answer["response"]["warnings"][0]
    time.sleep(0.2)
    assert sent == []
    admission.handle(_body(_vm_azure()), deps)
    _wait_for("the skipped event", lambda: len(sent) == 1)
    assert sent[0].type == events.OPTIMIZATION_SKIPPED and "not found" in sent[0].data["reason"]


def test_events_beyond_the_backlog_are_dropped_and_admissions_do_not_wait(tmp_path: Path) -> None:
    release = threading.Event()
    sent: list[events.Event] = []

    def stuck_sink(event: events.Event) -> None:
        release.wait(10)
        sent.append(event)

    deps = _deps(tmp_path, publish=stuck_sink, event_slots=threading.BoundedSemaphore(3))
    started = time.monotonic()
    for _ in range(10):
        assert admission.handle(_body(_vm_azure()), deps)["response"]["allowed"] is True
    assert time.monotonic() - started < 5
    release.set()
    _wait_for("the backlog to drain", lambda: len(sent) == 3)
    time.sleep(0.2)
    assert len(sent) == 3, "7 events were dropped, not queued without bound"


def test_one_computation_per_window_however_many_ask() -> None:
    cache = WindowCache(ttl=60)
    calls: list[int] = []
    gate = threading.Event()

    def compute() -> list[dict[str, Any]]:
        calls.append(1)
        gate.wait(5)
        return [{"resourceid": "vm1"}]

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute(("k",), compute))) for _ in range(20)]
    for t in threads:
        t.start()
    _wait_for("the leader to start", lambda: calls)
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and results == [[{"resourceid": "vm1"}]] * 20
    assert cache.get(("k",)) == [{"resourceid": "vm1"}]


def test_a_failed_computation_reaches_every_waiter_and_is_not_cached() -> None:
    cache = WindowCache(ttl=60)
    gate = threading.Event()

    def failing() -> list[dict[str, Any]]:
        gate.wait(5)
        raise Unavailable("handler down")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get_or_compute(("k",), failing)
        except Unavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 5 and cache.get(("k",)) is None
    assert cache.get_or_compute(("k",), lambda: [{"ok": True}]) == [{"ok": True}]


@pytest.mark.parametrize("obj", [
    {"status": {"managed": [{"apiVersion": "compute.azure.com/v1api20220301", "resource": "virtualmachines", "name": "vm-gone"}]}},
    {},
], ids=["unresolved-vm", "no-resources"])
def test_no_patch_when_the_resources_are_not_all_known(tmp_path: Path, obj: dict[str, Any]) -> None:
    composition = {**_vm_azure(), **obj}
    composition["metadata"] = {"name": "c", "namespace": "demo"}
    answer = admission.handle(_body(composition), _deps(tmp_path))
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]
    assert answer["response"]["warnings"]
