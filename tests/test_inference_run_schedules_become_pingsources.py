"""A scheduled InferenceRun gets one PingSource, as Knative takes it; the bridge announces both kinds.

Cases (functions.models.cron, functions.models.pingsources, functions.bridge; pure, no cluster):
- 5-field crons are kept verbatim; @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually
  become the 5 fields Knative's PingSource (robfig/cron) reads them as, and say so in a note;
- 6- and 7-field crons (seconds, years), an unknown descriptor, a time zone prefix, a wrong field
  count and an out-of-range or named field are refused with the reason (ScheduleRefused, loc spec.schedule);
- the PingSource of Krateo's scheduled test run: name `<run>-inference`, owner reference to the run,
  cron, UTC, the original schedule in an annotation, tick data {kind, namespace, name} and the
  `finopstarget: inference` extension the inference-runner Trigger filters on; a run without a
  schedule and an InferenceConfig get none;
- the bridge: a valid InferenceRun and InferenceConfig get io.finops.cr.applied (data = the validated CR,
  status left out) and Ready/Synced True; a deleted run gets io.finops.cr.deleted;
- a 6/7-field schedule: no event, no PingSource, Ready/Synced False with `spec.schedule` and why in
  the condition message, final (not retried) even while the config is still missing;
- a missing InferenceConfig, and a missing `krateo` endpoint Secret, are named and retried;
- RBAC lets the bridge watch and patch both kinds and the runner patch its runs' status.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions import bridge, events
from functions.models.cron import ScheduleRefused, pingsource_cron
from functions.models.pingsources import ANNOTATION_NOTE, ANNOTATION_SCHEDULE, pingsources_for, plan

ROOT = Path(__file__).resolve().parent.parent
KRATEO = ROOT / "tests" / "data" / "krateo-kserve" / "testdata"
NS = "kserve-test"


def _krateo(name: str, kind: str) -> dict[str, Any]:
    doc = next(d for d in yaml.safe_load_all((KRATEO / name).read_text(encoding="utf-8")) if d["kind"] == kind)
    return copy.deepcopy(doc)


def scheduled_run(schedule: str | None = "1 * * * *") -> dict[str, Any]:
    run = _krateo("testdata-iris-schedule.yaml", "InferenceRun")
    run["metadata"].update(uid="5be07ada-58d3-4b5e-9c2a-1f1f1f1f1f1f", generation=2)
    if schedule is None:
        del run["spec"]["schedule"]
    else:
        run["spec"]["schedule"] = schedule
    return run


class Cluster:
    """What the bridge can look up: the configs and Secrets that exist (kind, namespace, name)."""

    def __init__(self, *objects: tuple[str, str, str]) -> None:
        self.objects = {key: {"metadata": {"name": key[2], "namespace": key[1]}} for key in objects}

    def __call__(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))


EVERYTHING = Cluster(("InferenceConfig", NS, "testdata-iris-schedule"),
                     ("Secret", "kserve-controller-system", "finops-database-handler-endpoint"))


@pytest.mark.parametrize(("schedule", "cron"), [
    ("1 * * * *", "1 * * * *"), ("*/15 * * * *", "*/15 * * * *"), ("0 6-18/2 * * 1-5", "0 6-18/2 * * 1-5"),
    ("  0 0 1,15 * *  ", "0 0 1,15 * *"),
], ids=str)
def test_five_field_crons_are_kept_verbatim(schedule: str, cron: str) -> None:
    ping = pingsource_cron(schedule)
    assert (ping.cron, ping.original, ping.note) == (cron, cron, "")


@pytest.mark.parametrize(("descriptor", "cron"), [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
], ids=str)
def test_descriptors_become_the_five_fields_pingsource_reads_them_as(descriptor: str, cron: str) -> None:
    ping = pingsource_cron(descriptor)
    assert (ping.cron, ping.original) == (cron, descriptor)
    assert ping.note == f"{descriptor} is {cron!r} (as Knative PingSource reads it), written as that 5-field cron"


@pytest.mark.parametrize(("schedule", "reason"), [
    ("0 0 * * * *", "has 6 fields (seconds): Knative PingSource takes the 5 standard cron fields"),
    ("0 0 1 1 * 2030 *", "has 7 fields (seconds and years): Knative PingSource takes the 5 standard cron fields"),
    ("@every 1h", "is not a supported descriptor: use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
    ("@Daily", "is not a supported descriptor"),
    ("CRON_TZ=Europe/Rome 0 1 * * *", "a time zone prefix is not supported, schedules run in UTC"),
    ("1 * * *", "is not a cron schedule: expected 5 fields"),
    ("61 * * * *", "'61' is outside 0-59"),
    ("0 0 * * MON", "names such as MON or JAN are not supported"),
], ids=str)
def test_schedules_a_pingsource_cannot_take_are_refused_with_the_reason(schedule: str, reason: str) -> None:
    with pytest.raises(ScheduleRefused) as caught:
        pingsource_cron(schedule)
    assert reason in str(caught.value) and caught.value.loc == "spec.schedule"


def test_a_scheduled_run_gets_one_pingsource_naming_it() -> None:
    (ps,) = pingsources_for(scheduled_run())
    assert ps["metadata"]["name"] == "testdata-iris-schedule-inference"
    assert ps["metadata"]["namespace"] == NS
    assert ps["metadata"]["annotations"] == {ANNOTATION_SCHEDULE: "1 * * * *"}
    assert ps["metadata"]["labels"]["finops.krateo.io/owner-kind"] == "InferenceRun"
    assert ps["metadata"]["ownerReferences"] == [{
        "apiVersion": "ai.krateo.io/v1", "kind": "InferenceRun", "name": "testdata-iris-schedule",
        "uid": "5be07ada-58d3-4b5e-9c2a-1f1f1f1f1f1f", "controller": True, "blockOwnerDeletion": True}]
    spec = ps["spec"]
    assert (spec["schedule"], spec["timezone"], spec["contentType"]) == ("1 * * * *", "UTC", "application/json")
    assert json.loads(spec["data"]) == {"kind": "InferenceRun", "namespace": NS, "name": "testdata-iris-schedule"}
    assert spec["ceOverrides"]["extensions"] == {"finopstarget": "inference", "kind": "InferenceRun",
                                                 "crnamespace": NS, "crname": "testdata-iris-schedule"}
    assert spec["sink"]["ref"] == {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default",
                                   "namespace": "finops"}


def test_a_descriptor_schedule_keeps_the_original_and_the_note() -> None:
    (p,) = plan(scheduled_run("@daily"))
    annotations = p.manifest["metadata"]["annotations"]
    assert p.manifest["spec"]["schedule"] == "0 0 * * *"
    assert annotations[ANNOTATION_SCHEDULE] == "@daily" and "0 0 * * *" in annotations[ANNOTATION_NOTE]


@pytest.mark.parametrize("doc", [scheduled_run(None), _krateo("testdata-iris-schedule.yaml", "InferenceConfig")],
                         ids=["run-without-schedule", "config"])
def test_unscheduled_kinds_get_no_pingsource(doc: dict[str, Any]) -> None:
    assert pingsources_for(doc) == []


@pytest.mark.parametrize("kind", ["InferenceConfig", "InferenceRun"])
def test_the_bridge_announces_both_kinds(kind: str) -> None:
    doc = scheduled_run() if kind == "InferenceRun" else _krateo("testdata-iris-schedule.yaml", kind)
    doc["status"] = {"conditions": []}
    rec = bridge.reconcile(doc, EVERYTHING)
    assert rec.ok, rec.message
    assert rec.event is not None and rec.event.type == events.CR_APPLIED
    assert rec.event.subject == f"{kind}/{NS}/testdata-iris-schedule"
    assert rec.event.extensions == {"kind": kind, "crnamespace": NS, "crname": "testdata-iris-schedule"}
    assert "status" not in rec.event.data
    assert all(rec.event.data["spec"][key] == value for key, value in doc["spec"].items())  # the CR as written
    status = bridge.status(rec, None, "T1")
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Ready", "True"), ("Synced", "True")]
    if kind == "InferenceRun":
        assert [s["pingSource"] for s in status["schedules"]] == ["testdata-iris-schedule-inference"]
        assert "runs inference at '1 * * * *'" in status["conditions"][0]["message"]
    deleted = bridge.deleted_event(doc)
    assert deleted is not None and (deleted.type, deleted.subject) == (events.CR_DELETED, rec.event.subject)


@pytest.mark.parametrize(("schedule", "fields"), [("0 0 * * * *", 6), ("0 0 1 1 * 2030 *", 7)], ids=["6", "7"])
@pytest.mark.parametrize("cluster", [EVERYTHING, Cluster()], ids=["config-exists", "config-missing"])
def test_a_six_or_seven_field_schedule_is_refused_in_the_status(schedule: str, fields: int, cluster: Cluster) -> None:
    rec = bridge.reconcile(scheduled_run(schedule), cluster)
    assert not rec.ok and rec.errors and not rec.missing  # final: no retry would make it run
    assert rec.event is None and rec.pingsources == [] and rec.schedules() == []
    status = bridge.status(rec, None, "T1")
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "Unavailable"), ("Synced", "False", "ReconcileError")]
    message = status["conditions"][0]["message"]
    assert message.startswith(f"spec.schedule: {schedule!r} has {fields} fields")
    assert "Knative PingSource takes the 5 standard cron fields" in message
    stale = bridge.stale([pingsources_for(scheduled_run())[0]], rec)
    assert stale == ["testdata-iris-schedule-inference"]  # the PingSource of its last good schedule goes


REFERENCES = [
    pytest.param(scheduled_run(), Cluster(("Secret", "kserve-controller-system", "finops-database-handler-endpoint")),
                 "spec.configRef", f"InferenceConfig {NS}/testdata-iris-schedule not found", id="missing-config"),
    pytest.param(_krateo("testdata-iris-schedule.yaml", "InferenceConfig"), Cluster(),
                 "spec.storage.input.krateo.api.endpointRef",
                 "Secret kserve-controller-system/finops-database-handler-endpoint not found", id="missing-secret"),
]


@pytest.mark.parametrize(("doc", "cluster", "field", "msg"), REFERENCES)
def test_missing_references_are_named_and_retried(doc: dict[str, Any], cluster: Cluster, field: str, msg: str) -> None:
    rec = bridge.reconcile(doc, cluster)
    assert not rec.ok and rec.missing and not rec.errors
    assert (rec.missing[0].loc, rec.missing[0].msg) == (field, msg)
    assert rec.event is None and rec.pingsources == []


def test_a_custom_provider_needs_no_secret() -> None:
    config = _krateo("testdata-custom.yaml", "InferenceConfig")  # output is `custom`: the runner's to read
    rec = bridge.reconcile(config, Cluster(("Secret", "kserve-controller-system", "finops-database-handler-endpoint")))
    assert rec.ok, rec.message


def _rules(role: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "knative" / "base" / "05-rbac.yaml").read_text(encoding="utf-8"))
    return next(d for d in docs if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == role)["rules"]


def _verbs(role: str, resource: str) -> set[str]:
    return {v for r in _rules(role) if "ai.krateo.io" in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_rbac_covers_both_kinds() -> None:
    for plural in ("inferenceconfigs", "inferenceruns"):
        assert _verbs("finops-bridge", plural) == {"get", "list", "watch", "patch"}
        assert _verbs("finops-bridge", f"{plural}/status") == {"get", "patch"}
        assert _verbs("finops-functions", plural) == {"get", "list"}
    assert _verbs("finops-functions", "inferenceruns/status") == {"patch"}
    assert _verbs("finops-functions", "inferenceconfigs/status") == set()
