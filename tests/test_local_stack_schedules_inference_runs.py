"""The local stack knows InferenceConfig and InferenceRun: stored, scheduled and routed like in a cluster.

Real parts only: the CR store on a temporary state folder, the scheduler, and the broker with the
Triggers of knative/base delivering to a loopback HTTP server standing in for the inference-runner
Service (the one thing this issue's other half provides). Cases:
- `apply` of Krateo's scheduled test data stores both CRs, emits io.finops.cr.applied for each, and
  stores the run's PingSource (owned by the run); changing the schedule replaces its cron, removing
  the schedule or deleting the run removes it, and the deletion emits io.finops.cr.deleted;
- a 6- or 7-field schedule is refused at apply, naming spec.schedule and why; nothing of the batch is
  written; a descriptor (@hourly) is stored as its 5-field cron;
- kinds resolve like kubectl's (plural, singular, any case);
- the scheduler fires the run's PingSource only at matching minutes; the tick, sent through the
  broker, reaches the inference-runner (Trigger inference-runner-ping) with data {kind, namespace,
  name}, and no other function;
- io.finops.cr.applied / cr.deleted reach the inference-runner for InferenceRun only, never for
  InferenceConfig.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_http import Reply, Server, serve

from functions import events
from functions.errors import InvalidInput
from functions.local.broker import Broker, load_triggers
from functions.local.crstore import CrStore, kind_name, load_documents
from functions.local.scheduler import Scheduler, due, ping_event

ROOT = Path(__file__).resolve().parent.parent
KNATIVE = ROOT / "knative" / "base"
SCHEDULED = ROOT / "tests" / "data" / "krateo-kserve" / "testdata" / "testdata-iris-schedule.yaml"
NS, NAME = "kserve-test", "testdata-iris-schedule"
SERVICES = ("inference-runner", "exporter", "scraper", "focus-ingest", "notebooks", "optimizer")


def _docs(schedule: str | None = "keep") -> list[dict[str, Any]]:
    docs = load_documents(SCHEDULED)
    run = next(d for d in docs if d["kind"] == "InferenceRun")
    if schedule is None:
        del run["spec"]["schedule"]
    elif schedule != "keep":
        run["spec"]["schedule"] = schedule
    return docs


def test_apply_stores_both_kinds_and_the_runs_pingsource(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    changes = store.apply(_docs())
    assert [(c.kind, c.action) for c in changes] == [("InferenceConfig", "created"), ("InferenceRun", "created")]
    assert [(e.type, e.subject) for c in changes for e in c.events] == [
        (events.CR_APPLIED, f"InferenceConfig/{NS}/{NAME}"), (events.CR_APPLIED, f"InferenceRun/{NS}/{NAME}")]
    (ps,) = store.pingsources()
    run = store.get("inferenceruns", NS, NAME)
    assert run is not None and run["metadata"]["generation"] == 1
    assert ps["metadata"]["name"] == f"{NAME}-inference" and ps["spec"]["schedule"] == "1 * * * *"
    assert ps["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]

    store.apply(_docs("*/10 * * * *"))
    assert [p["spec"]["schedule"] for p in store.pingsources()] == ["*/10 * * * *"]
    store.apply(_docs(None))
    assert store.pingsources() == []
    store.apply(_docs())
    deleted = store.delete("inferencerun", NS, NAME)
    assert [(e.type, e.subject) for e in deleted.events] == [(events.CR_DELETED, f"InferenceRun/{NS}/{NAME}")]
    assert store.pingsources() == [] and store.get("InferenceConfig", NS, NAME) is not None


@pytest.mark.parametrize(("schedule", "fields"), [("0 0 * * * *", 6), ("0 0 1 1 * 2030 *", 7)], ids=["6", "7"])
def test_a_schedule_no_pingsource_takes_is_refused_at_apply(tmp_path: Path, schedule: str, fields: int) -> None:
    store = CrStore(tmp_path)
    with pytest.raises(InvalidInput) as caught:
        store.apply(_docs(schedule))
    assert f"spec.schedule: {schedule!r} has {fields} fields" in caught.value.message
    assert [e.loc for e in caught.value.errors] == ["spec.schedule"]
    assert store.list() == [] and store.pingsources() == []  # the config of the same batch is not written either


def test_a_descriptor_is_stored_as_its_five_fields(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply(_docs("@hourly"))
    (ps,) = store.pingsources()
    assert ps["spec"]["schedule"] == "0 * * * *"
    assert ps["metadata"]["annotations"]["finops.krateo.io/schedule"] == "@hourly"


@pytest.mark.parametrize(("typed", "kind"), [("inferenceruns", "InferenceRun"), ("InferenceRun", "InferenceRun"),
                                             ("inferenceconfig", "InferenceConfig"), ("INFERENCECONFIGS", "InferenceConfig")],
                         ids=str)
def test_kinds_resolve_like_kubectl(typed: str, kind: str) -> None:
    assert kind_name(typed) == kind


@pytest.fixture
def sinks() -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    with serve(Reply(200)) as runner:  # an empty 200: delivered, no reply
        servers["inference-runner"] = runner
        with serve(Reply(200)) as other:
            servers.update({name: other for name in SERVICES[1:]})
            yield servers


@pytest.fixture
def broker(sinks: dict[str, Server], tmp_path: Path) -> Iterator[Broker]:
    b = Broker(load_triggers(KNATIVE), {n: s.url for n, s in sinks.items()}.get, tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_the_schedulers_tick_reaches_the_inference_runner(tmp_path: Path, broker: Broker,
                                                         sinks: dict[str, Server]) -> None:
    CrStore(tmp_path).apply(_docs())
    scheduler = Scheduler(broker.url + "/?wait=true", tmp_path, None)
    (ps,) = scheduler.pingsources()
    assert due([ps], datetime(2026, 3, 1, 10, 1, tzinfo=UTC)) == [ps]
    assert due([ps], datetime(2026, 3, 1, 10, 2, tzinfo=UTC)) == []
    assert scheduler.tick(datetime(2026, 3, 1, 10, 2, tzinfo=UTC)) == []

    (sent,) = scheduler.tick(datetime(2026, 3, 1, 10, 1, tzinfo=UTC))
    (seen,) = sinks["inference-runner"].seen
    assert (seen.headers["ce-id"], seen.headers["ce-type"]) == (sent, events.PING)
    assert seen.headers["ce-source"] == f"/apis/v1/namespaces/{NS}/pingsources/{NAME}-inference"
    assert seen.headers["ce-finopstarget"] == "inference" and seen.headers["ce-kind"] == "InferenceRun"
    assert json.loads(seen.body) == {"kind": "InferenceRun", "namespace": NS, "name": NAME}
    assert sinks["exporter"].seen == []  # no other Trigger takes an inference tick
    assert ping_event(ps).data == {"kind": "InferenceRun", "namespace": NS, "name": NAME}


def _post(broker: Broker, event: events.Event) -> dict[str, Any]:
    headers, body = events.to_binary(event)
    answer = httpx.post(broker.url + "/?wait=true", headers=headers, content=body, timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


@pytest.mark.parametrize(("kind", "trigger"), [("InferenceRun", "inference-runner-cr-applied"), ("InferenceConfig", None)],
                         ids=["run", "config"])
def test_cr_events_reach_the_runner_for_runs_only(tmp_path: Path, broker: Broker, sinks: dict[str, Server],
                                                 kind: str, trigger: str | None) -> None:
    (change,) = [c for c in CrStore(tmp_path).apply(_docs()) if c.kind == kind]
    (applied,) = change.events
    answer = _post(broker, applied)
    assert [d["trigger"] for d in answer["deliveries"]] == ([trigger] if trigger else [])
    deleted = CrStore(tmp_path).delete(kind, NS, NAME).events[0]
    answer = _post(broker, deleted)
    assert [d["trigger"] for d in answer["deliveries"]] == (["inference-runner-cr-deleted"] if trigger else [])
    assert len(sinks["inference-runner"].seen) == (2 if trigger else 0)
    assert sinks["exporter"].seen == []
