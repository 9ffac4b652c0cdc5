"""functions/bridge.py, pure: a CR body in; its event, PingSources and status conditions out.

Cases:
- schedules: 1m, 12h, 12h30m and 5s intervals -> the exact PingSource body (owner reference, cron,
  note annotation, tick data and extensions, Broker sink), the note also in status.schedules;
- the applied event: subject Kind/ns/name, extensions, data = the validated CR (defaults filled, no
  status, no kopf bookkeeping); the deleted event;
- invalid CRs name each bad field (bad duration, wrong metricType, unknown field, missing required
  Secret reference, wrong apiVersion, unknown kind) and produce no event and no PingSource;
- referenced objects: a missing Secret, a missing Secret key, a missing DatabaseConfig are named and
  marked for retry;
- conditions keep lastTransitionTime while their status holds, and change it when it flips; the
  bridge replaces Ready and Synced only, keeping another writer's types (the runner's Succeeded);
- stale PingSources: owned ones not wanted any more are listed, others' never;
- every registered kind of our groups is watched; resume re-announces only changed specs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from functions import bridge, events
from functions.models.registry import all_kinds

NS = "finops"
SECRETS = {("Secret", NS, "cost-api"): {"data": {}, "stringData": {"server-url": "http://x"}},
           ("Secret", NS, "db-pass"): {"stringData": {"password": "p"}},
           ("DatabaseConfig", NS, "finops-db"): {"spec": {}}}


def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return SECRETS.get((kind, namespace, name))


def esc(interval: str = "1h", name: str = "costs") -> dict[str, Any]:
    return {
        "apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
        "metadata": {"name": name, "namespace": NS, "uid": "u-1", "generation": 3, "resourceVersion": "9",
                     "annotations": {"bridge.finops.krateo.io/last-handled-configuration": "{}", "team": "a"},
                     "finalizers": [bridge.FINALIZER], "managedFields": [{"manager": "kubectl"}]},
        "spec": {
            "exporterConfig": {"api": {"path": "/c.csv", "endpointRef": {"name": "cost-api", "namespace": NS}},
                               "pollingInterval": interval},
            "scraperConfig": {"tableName": "costs", "pollingInterval": interval,
                              "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}},
        },
        "status": {"conditions": []},
    }


SCHEDULES = [
    pytest.param("1m", "* * * * *", "", id="1m"),
    pytest.param("12h", "0 */12 * * *", "", id="12h"),
    pytest.param("12h30m", "0 */12 * * *", "interval 12h30m0s is not whole hours; running every 12h", id="12h30m"),
    pytest.param("5s", "* * * * *", "interval 5s is below the one-minute cron floor; running every minute", id="5s"),
]


@pytest.mark.parametrize(("interval", "cron", "note"), SCHEDULES)
def test_each_interval_becomes_the_exact_pingsource(interval: str, cron: str, note: str) -> None:
    rec = bridge.reconcile(esc(interval), lookup)
    assert rec.ok, rec.message
    (ps,) = rec.pingsources
    full_note = "; ".join(n for n in (note, f"scraperConfig.pollingInterval ({interval}) has no separate timer: "
                                            "the scrape follows io.finops.export.completed") if n)
    annotations = {"finops.krateo.io/polling-interval": ps["metadata"]["annotations"]["finops.krateo.io/polling-interval"],
                   "finops.krateo.io/schedule-note": full_note}
    assert ps == {
        "apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
        "metadata": {
            "name": "costs-exporter", "namespace": NS,
            "labels": {"app.kubernetes.io/managed-by": "finops-bridge", "finops.krateo.io/owner-kind": "ExporterScraperConfig",
                       "finops.krateo.io/owner-name": "costs"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig", "name": "costs",
                                 "uid": "u-1", "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "schedule": cron, "timezone": "UTC", "contentType": "application/json",
            "data": json.dumps({"kind": "ExporterScraperConfig", "namespace": NS, "name": "costs"}, separators=(",", ":")),
            "ceOverrides": {"extensions": {"finopstarget": "exporter", "kind": "ExporterScraperConfig",
                                           "crnamespace": NS, "crname": "costs"}},
            "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default",
                             "namespace": "finops"}},
        },
    }
    status = bridge.status(rec, None, "2025-01-01T00:00:00Z")
    assert status["schedules"][0]["schedule"] == cron
    assert status["schedules"][0]["note"] == full_note
    assert status["observedGeneration"] == 3
    assert cron in status["conditions"][0]["message"]


def test_scraperconfig_schedules_its_own_scrape() -> None:
    cr = {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig",
          "metadata": {"name": "m", "namespace": NS, "uid": "u-2"},
          "spec": {"tableName": "t", "pollingInterval": "5m",
                   "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}}}
    (ps,) = bridge.reconcile(cr, lookup).pingsources
    assert (ps["metadata"]["name"], ps["spec"]["schedule"]) == ("m-scraper", "*/5 * * * *")
    assert ps["spec"]["ceOverrides"]["extensions"]["finopstarget"] == "scraper"


def test_the_applied_event_carries_the_validated_cr() -> None:
    ev = bridge.reconcile(esc(), lookup).event
    assert ev is not None
    assert (ev.type, ev.subject, ev.source) == (events.CR_APPLIED, "ExporterScraperConfig/finops/costs", bridge.SOURCE)
    assert ev.extensions == {"kind": "ExporterScraperConfig", "crnamespace": NS, "crname": "costs"}
    assert ev.data["spec"]["exporterConfig"]["metricType"] == "cost"  # default filled in
    assert ev.data["spec"]["exporterConfig"]["api"]["verb"] == "GET"
    assert "status" not in ev.data
    meta = ev.data["metadata"]
    assert meta["annotations"] == {"team": "a"} and "finalizers" not in meta and "managedFields" not in meta
    headers, body = events.to_binary(ev)  # and it is a real CloudEvent
    assert events.from_http(headers, body).data == ev.data


def test_the_deleted_event_carries_the_last_cr() -> None:
    ev = bridge.deleted_event(esc())
    assert (ev.type, ev.subject) == (events.CR_DELETED, "ExporterScraperConfig/finops/costs")
    broken = esc()
    broken["spec"]["exporterConfig"]["pollingInterval"] = "soon"
    assert bridge.deleted_event(broken).data["spec"]["exporterConfig"]["pollingInterval"] == "soon"


def _with(path: list[str], value: Any, delete: bool = False) -> dict[str, Any]:
    cr = copy.deepcopy(esc())
    node = cr
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cr


INVALID = [
    pytest.param(_with(["spec", "exporterConfig", "pollingInterval"], "1x"), "spec.exporterConfig.pollingInterval", id="bad-duration"),
    pytest.param(_with(["spec", "exporterConfig", "metricType"], "money"), "spec.exporterConfig.metricType", id="wrong-metric-type"),
    pytest.param(_with(["spec", "exporterConfig", "colour"], "blue"), "spec.exporterConfig.colour", id="unknown-field"),
    pytest.param(_with(["spec", "scraperConfig", "scraperDatabaseConfigRef"], None, delete=True),
                 "spec.scraperConfig.scraperDatabaseConfigRef", id="missing-reference"),
    pytest.param(_with(["apiVersion"], "finops.krateo.io/v2"), "apiVersion", id="wrong-api-version"),
    pytest.param(_with(["kind"], "Mystery"), "kind", id="unknown-kind"),
]


@pytest.mark.parametrize(("cr", "field"), INVALID)
def test_invalid_crs_name_the_field_and_produce_nothing(cr: dict[str, Any], field: str) -> None:
    rec = bridge.reconcile(cr, lookup)
    assert not rec.ok and rec.errors and not rec.missing
    assert any(e.loc == field for e in rec.errors), rec.errors
    assert rec.event is None and rec.pingsources == [] and rec.schedules() == []
    status = bridge.status(rec, None, "T")
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "Unavailable"), ("Synced", "False", "ReconcileError")]
    assert field in status["conditions"][0]["message"]


REFERENCES = [
    pytest.param(_with(["spec", "exporterConfig", "api", "endpointRef", "name"], "gone"),
                 "spec.exporterConfig.api.endpointRef", "Secret finops/gone not found", id="missing-secret"),
    pytest.param(_with(["spec", "scraperConfig", "scraperDatabaseConfigRef", "name"], "other"),
                 "spec.scraperConfig.scraperDatabaseConfigRef", "DatabaseConfig finops/other not found", id="missing-dbconfig"),
]


@pytest.mark.parametrize(("cr", "field", "msg"), REFERENCES)
def test_missing_references_are_named_and_retried(cr: dict[str, Any], field: str, msg: str) -> None:
    rec = bridge.reconcile(cr, lookup)
    assert not rec.ok and rec.missing and not rec.errors
    assert [(e.loc, e.msg) for e in rec.missing] == [(field, msg)]
    assert rec.event is None and rec.pingsources == []


def test_a_secret_key_that_is_missing_is_named() -> None:
    dbconf = {"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig", "metadata": {"name": "d", "namespace": NS},
              "spec": {"username": "u", "passwordSecretRef": {"name": "db-pass", "namespace": NS, "key": "pw"}}}
    rec = bridge.reconcile(dbconf, lookup)
    assert [(e.loc, e.msg) for e in rec.missing] == [("spec.passwordSecretRef.key", "Secret finops/db-pass has no key 'pw'")]
    dbconf["spec"]["passwordSecretRef"]["key"] = "password"
    assert bridge.reconcile(dbconf, lookup).ok


def test_conditions_keep_their_transition_time_until_they_flip() -> None:
    ok = bridge.reconcile(esc(), lookup)
    first = bridge.status(ok, None, "T1")
    again = bridge.status(ok, first, "T2")
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["T1", "T1"]
    bad = bridge.reconcile(_with(["spec", "exporterConfig", "pollingInterval"], "1x"), lookup)
    flipped = bridge.status(bad, again, "T3")
    assert [c["lastTransitionTime"] for c in flipped["conditions"]] == ["T3", "T3"]
    failed = bridge.delivery_failed(ok, first, "sink down", "T4")
    assert [(c["type"], c["status"], c["lastTransitionTime"]) for c in failed["conditions"]] == [
        ("Ready", "True", "T1"), ("Synced", "False", "T4")]
    assert "sink down" in failed["conditions"][1]["message"]


def test_the_bridge_keeps_other_writers_condition_types() -> None:
    runners = {"type": "Succeeded", "status": "False", "lastTransitionTime": "T0", "reason": "InferFailed",
               "message": "infer step failed (Krateo exit code 4): 503"}
    ok = bridge.reconcile(esc(), lookup)
    written = bridge.status(ok, {"conditions": [runners]}, "T1")
    assert [c["type"] for c in written["conditions"]] == ["Ready", "Synced", "Succeeded"]
    assert written["conditions"][2] == runners
    failed = bridge.delivery_failed(ok, written, "sink down", "T2")
    assert failed["conditions"][2] == runners


def test_stale_pingsources_are_only_our_own() -> None:
    ours = {"metadata": {"name": "costs-old", "ownerReferences": [{"kind": "ExporterScraperConfig", "name": "costs"}]}}
    labelled = {"metadata": {"name": "costs-x", "labels": {"finops.krateo.io/owner-kind": "ExporterScraperConfig",
                                                           "finops.krateo.io/owner-name": "costs"}}}
    foreign = {"metadata": {"name": "someone-else", "ownerReferences": [{"kind": "ScraperConfig", "name": "costs"}]}}
    wanted = {"metadata": {"name": "costs-exporter", "labels": labelled["metadata"]["labels"]}}
    rec = bridge.reconcile(esc(), lookup)
    assert bridge.stale([ours, labelled, foreign, wanted], rec) == ["costs-old", "costs-x"]
    broken = bridge.reconcile(_with(["spec", "exporterConfig", "pollingInterval"], "1x"), lookup)
    assert bridge.stale([ours, wanted], broken) == ["costs-old", "costs-exporter"]
    assert not bridge.differs({**rec.pingsources[0], "status": {"ready": True}}, rec.pingsources[0])


def test_every_kind_of_our_groups_is_watched_and_resume_announces_only_changes() -> None:
    assert {i.kind for i in bridge.watched_kinds()} == {k for k, i in all_kinds().items() if i.group in bridge.GROUPS}
    body = esc()
    assert bridge.needs_event(body)
    body["status"]["observedGeneration"] = 3
    assert not bridge.needs_event(body)
