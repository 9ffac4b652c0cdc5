"""A cycle's outcome lands in its CR's status, Krateo style, in the local store and through the API.

Cases:
- the condition rule (functions.models.k8s.conditions, shared with the bridge): a first condition gets
  `now`; an unchanged status keeps its lastTransitionTime even when reason and message change; a flip
  takes `now`; Ready and Synced each follow their own previous status;
- LocalStatusWriter: status.conditions and the extra fields are written into the CR's file; spec,
  metadata (generation, uid) and earlier status fields stay; re-applying the same CR afterwards is
  `unchanged` (no io.finops.cr.applied) and keeps the status; a CR that is gone is not re-created;
- write_outcome: True (Available / ReconcileSuccess) then True again keeps lastTransitionTime, False
  (ReconcileError) moves it; a missing CR is ignored;
- Degraded: True (RowsRejected, the message given) after a cycle that rejected rows, kept through a
  failed cycle, through a cycle that does not own it (an export whose scrape counts the rows) and
  through the bridge's own Ready/Synced rewrite, False (AllRowsStored) after a clean one;
- KubeStatusWriter against a real HTTP server on 127.0.0.1 speaking the API: one PATCH of
  /apis/finops.krateo.io/v1/namespaces/<ns>/exporterscraperconfigs/<name>/status as a JSON merge
  patch of status.conditions + extra; 404 (CR gone) ignored; 403 -> Unavailable naming RBAC; API
  server down -> Unavailable;
- status_writer_from_env picks the writer matching reader_from_env.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from loopback_http import Reply, serve

from functions.clients import kube
from functions.errors import Unavailable
from functions.local.crstore import CrStore
from functions.models.k8s import conditions

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
KIND, NS, NAME = "ExporterScraperConfig", "finops", "costs"


def esc() -> dict[str, Any]:
    return {
        "apiVersion": "finops.krateo.io/v1", "kind": KIND, "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "exporterConfig": {"api": {"path": "/costs", "verb": "GET"}, "metricType": "cost", "pollingInterval": "1h"},
            "scraperConfig": {"tableName": "costs", "pollingInterval": "1h",
                              "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": NS}},
        },
    }


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


# ---- the transition rule -------------------------------------------------------------------------


@pytest.mark.parametrize(("old_status", "new_ok", "expected_since"), [
    pytest.param(None, True, T1, id="first-condition-gets-now"),
    pytest.param("True", True, T0, id="unchanged-keeps-time"),
    pytest.param("False", False, T0, id="unchanged-false-keeps-time"),
    pytest.param("True", False, T1, id="flip-to-false-gets-now"),
    pytest.param("False", True, T1, id="flip-to-true-gets-now"),
])
def test_last_transition_time_moves_only_when_status_flips(old_status: str | None, new_ok: bool,
                                                           expected_since: str) -> None:
    old = [] if old_status is None else [
        {"type": t, "status": old_status, "lastTransitionTime": T0, "reason": "Old", "message": "old"}
        for t in ("Ready", "Synced")]
    new = by_type(conditions(old, new_ok, "Available", new_ok, "ReconcileSuccess", "new message", T1))
    for type_ in ("Ready", "Synced"):
        assert new[type_]["lastTransitionTime"] == expected_since
        assert new[type_]["status"] == ("True" if new_ok else "False")
        assert new[type_]["message"] == "new message"


def test_ready_and_synced_follow_their_own_previous_status() -> None:
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": T0, "reason": "Available"},
           {"type": "Synced", "status": "False", "lastTransitionTime": T0, "reason": "ReconcileError"}]
    new = by_type(conditions(old, True, "Available", True, "ReconcileSuccess", "ok", T1))
    assert new["Ready"]["lastTransitionTime"] == T0 and new["Synced"]["lastTransitionTime"] == T1


# ---- the local store -----------------------------------------------------------------------------


def test_local_writer_changes_only_status(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply([esc()])
    before = store.get(KIND, NS, NAME)
    assert before is not None
    path = kube.resource_path(tmp_path, KIND, NS, NAME)
    body = json.loads(path.read_text())
    body["status"] = {"observedGeneration": 1, "schedules": []}  # what the bridge wrote
    kube.write_json(path, body)

    conds = conditions(None, False, "ReconcileError", False, "ReconcileError", "bad payload", T0)
    kube.LocalStatusWriter(tmp_path).set_conditions(KIND, NS, NAME, conds, {"lastExport": {"rows": 3}})

    after = store.get(KIND, NS, NAME)
    assert after is not None
    assert after["spec"] == before["spec"] and after["metadata"] == before["metadata"]
    assert after["status"] == {"observedGeneration": 1, "schedules": [], "lastExport": {"rows": 3}, "conditions": conds}
    again = store.apply([esc()])
    assert [c.action for c in again] == ["unchanged"] and not again[0].events
    assert store.get(KIND, NS, NAME) == after


def test_local_writer_does_not_recreate_a_deleted_cr(tmp_path: Path) -> None:
    kube.LocalStatusWriter(tmp_path).set_conditions(KIND, NS, NAME, [], None)
    assert not kube.resource_path(tmp_path, KIND, NS, NAME).exists()


def test_write_outcome_keeps_the_time_until_the_status_flips(tmp_path: Path) -> None:
    CrStore(tmp_path).apply([esc()])
    reader, writer = kube.LocalReader(tmp_path), kube.LocalStatusWriter(tmp_path)

    def ready() -> dict[str, Any]:
        body = reader.get(KIND, NS, NAME)
        assert body is not None
        return by_type(body["status"]["conditions"])["Ready"]

    kube.write_outcome(reader, writer, KIND, NS, NAME, True, "exported 3 rows")
    first = ready()
    assert (first["status"], first["reason"], first["message"]) == ("True", "Available", "exported 3 rows")
    stamp = T0  # pretend the first outcome was written long ago
    body = reader.get(KIND, NS, NAME)
    assert body is not None
    body["status"]["conditions"] = [dict(c, lastTransitionTime=stamp) for c in body["status"]["conditions"]]
    kube.write_json(kube.resource_path(tmp_path, KIND, NS, NAME), body)

    kube.write_outcome(reader, writer, KIND, NS, NAME, True, "exported 4 rows")
    assert ready()["lastTransitionTime"] == stamp and ready()["message"] == "exported 4 rows"
    kube.write_outcome(reader, writer, KIND, NS, NAME, False, "unsupported content type text/plain")
    flipped = ready()
    assert (flipped["status"], flipped["reason"]) == ("False", "ReconcileError")
    assert flipped["lastTransitionTime"] != stamp
    kube.write_outcome(reader, writer, "ExporterScraperConfig", NS, "gone", False, "x")  # ignored
    assert not kube.resource_path(tmp_path, KIND, NS, "gone").exists()


def test_degraded_says_rows_were_rejected_until_a_clean_cycle(tmp_path: Path) -> None:
    CrStore(tmp_path).apply([esc()])
    reader, writer = kube.LocalReader(tmp_path), kube.LocalStatusWriter(tmp_path)

    def conds() -> dict[str, dict[str, Any]]:
        body = reader.get(KIND, NS, NAME)
        assert body is not None
        return by_type(body["status"]["conditions"])

    kube.write_outcome(reader, writer, KIND, NS, NAME, True, "uploaded 7 of 10 rows", rejected="3 of 10 rows rejected")
    got = conds()
    assert (got["Ready"]["status"], got["Degraded"]["status"], got["Degraded"]["reason"]) == ("True", "True", "RowsRejected")
    assert got["Degraded"]["message"] == "3 of 10 rows rejected"
    kube.write_outcome(reader, writer, KIND, NS, NAME, False, "the API is gone")
    assert conds()["Degraded"]["status"] == "True" and conds()["Ready"]["status"] == "False"
    kube.write_outcome(reader, writer, KIND, NS, NAME, True, "exported 10 rows", owns_degraded=False)
    assert conds()["Degraded"]["status"] == "True"  # an export followed by a scrape leaves Degraded to the scrape
    bridge = conditions(list(conds().values()), True, "Available", True, "ReconcileSuccess", "valid", T1)
    assert {c["type"] for c in bridge} == {"Ready", "Synced", "Degraded"}  # the bridge keeps what it does not own
    kube.write_outcome(reader, writer, KIND, NS, NAME, True, "uploaded 10 of 10 rows")
    assert (conds()["Degraded"]["status"], conds()["Degraded"]["reason"]) == ("False", "AllRowsStored")
    assert len(reader.get(KIND, NS, NAME)["status"]["conditions"]) == 3  # type: ignore[index]


# ---- the Kubernetes API --------------------------------------------------------------------------


def test_cluster_writer_sends_one_merge_patch_to_the_status_subresource() -> None:
    with serve(Reply(200, b'{"kind": "ExporterScraperConfig"}', {"Content-Type": "application/json"})) as api:
        conds = conditions(None, True, "Available", True, "ReconcileSuccess", "exported 3 rows", T0)
        kube.KubeStatusWriter(kube.KubeApiReader(api.url)).set_conditions(KIND, NS, NAME, conds, {"lastExport": {"rows": 3}})
    (seen,) = api.seen
    assert seen.method == "PATCH"
    assert seen.path == f"/apis/finops.krateo.io/v1/namespaces/{NS}/exporterscraperconfigs/{NAME}/status"
    assert seen.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(seen.body) == {"status": {"lastExport": {"rows": 3}, "conditions": conds}}


@pytest.mark.parametrize(("status", "raises"), [
    pytest.param(404, None, id="cr-gone-ignored"),
    pytest.param(403, "check RBAC", id="forbidden-unavailable"),
    pytest.param(500, "HTTP 500", id="server-error-unavailable"),
])
def test_cluster_writer_maps_api_answers(status: int, raises: str | None) -> None:
    with serve(Reply(status, b'{"kind": "Status"}', {"Content-Type": "application/json"})) as api:
        writer = kube.KubeStatusWriter(kube.KubeApiReader(api.url))
        if raises is None:
            writer.set_conditions(KIND, NS, NAME, [])
        else:
            with pytest.raises(Unavailable, match=raises):
                writer.set_conditions(KIND, NS, NAME, [])


def test_cluster_writer_with_the_api_server_down_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    writer = kube.KubeStatusWriter(kube.KubeApiReader(f"http://127.0.0.1:{port}"))
    with pytest.raises(Unavailable, match="unreachable"):
        writer.set_conditions(KIND, NS, NAME, [])


def test_writer_from_env_matches_the_reader(tmp_path: Path) -> None:
    local = kube.status_writer_from_env({"FINOPS_STATE_DIR": str(tmp_path)})
    assert isinstance(local, kube.LocalStatusWriter) and local.state_dir == tmp_path
    cluster = kube.status_writer_from_env({"FINOPS_KUBE": "cluster", "FINOPS_KUBE_HOST": "http://127.0.0.1:1"})
    assert isinstance(cluster, kube.KubeStatusWriter)
