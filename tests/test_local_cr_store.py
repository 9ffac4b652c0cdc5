"""The local CR store keeps CRs and Secrets as files and emits the events the kopf bridge would.

Cases:
- apply creates (uid, generation 1, creationTimestamp), emits io.finops.cr.applied with subject, data
  and the `kind` extension; a re-apply of the same object is unchanged and emits nothing;
- a spec change bumps generation and keeps uid; delete emits io.finops.cr.deleted and removes the file;
- the derived PingSources are stored with the CR, replaced when the interval changes, removed with it;
- Secrets are stored as-is and emit nothing; a Secret whose data is not base64 is refused;
- an invalid CR is refused with every bad field named, and nothing of the batch is written;
- an unknown kind is refused with the list of supported kinds;
- kinds resolve by plural and short name (dbconf); the LocalReader sees what the store wrote.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from functions import events
from functions.clients.kube import LocalReader
from functions.errors import InvalidInput, NotFound
from functions.local.crstore import CrStore, load_documents

ROOT = Path(__file__).resolve().parent.parent
ESC = load_documents(ROOT / "crds" / "examples" / "exporterscraperconfig-focus-cost.yaml")[0]


def test_apply_get_delete(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    [change] = store.apply([ESC])
    assert change.action == "created"
    [event] = change.events
    assert event.type == events.CR_APPLIED
    assert event.subject == "ExporterScraperConfig/finops/demo-focus-cost"
    assert event.extensions["kind"] == "ExporterScraperConfig"
    assert event.data["spec"] == ESC["spec"]
    stored = store.get("exporterscraperconfigs", "finops", "demo-focus-cost")
    assert stored is not None
    meta = stored["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert LocalReader(tmp_path).get("ExporterScraperConfig", "finops", "demo-focus-cost") == stored

    [again] = store.apply([ESC])
    assert (again.action, again.events) == ("unchanged", [])

    changed = copy.deepcopy(ESC)
    changed["spec"]["exporterConfig"]["pollingInterval"] = "12h"
    [change] = store.apply([changed])
    after = store.get("ExporterScraperConfig", "finops", "demo-focus-cost")
    assert after is not None
    assert change.action == "configured" and after["metadata"]["generation"] == 2
    assert after["metadata"]["uid"] == meta["uid"]

    deleted = store.delete("ExporterScraperConfig", "finops", "demo-focus-cost")
    assert [e.type for e in deleted.events] == [events.CR_DELETED]
    assert store.get("ExporterScraperConfig", "finops", "demo-focus-cost") is None
    with pytest.raises(NotFound):
        store.delete("ExporterScraperConfig", "finops", "demo-focus-cost")


def test_pingsources_live_and_die_with_their_cr(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply([ESC])
    [ps] = store.pingsources()
    assert ps["metadata"]["name"] == "demo-focus-cost-exporter" and ps["spec"]["schedule"] == "0 * * * *"
    uid = store.get("ExporterScraperConfig", "finops", "demo-focus-cost")["metadata"]["uid"]  # type: ignore[index]
    assert ps["metadata"]["ownerReferences"][0]["uid"] == uid
    faster = copy.deepcopy(ESC)
    faster["spec"]["exporterConfig"]["pollingInterval"] = "15m"
    store.apply([faster])
    assert [p["spec"]["schedule"] for p in store.pingsources()] == ["*/15 * * * *"]
    store.delete("ExporterScraperConfig", "finops", "demo-focus-cost")
    assert store.pingsources() == []


def test_secrets_are_stored_as_is(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": "finops"},
              "stringData": {"server-url": "http://127.0.0.1:1"}}
    [change] = store.apply([secret])
    assert change.events == []
    assert LocalReader(tmp_path).get_secret("finops", "api")["stringData"] == secret["stringData"]  # type: ignore[index]
    bad = {**secret, "data": {"token": "%%%"}}
    with pytest.raises(InvalidInput, match="not base64"):
        store.apply([bad])


def _invalid_scraper() -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig", "metadata": {"name": "bad"},
            "spec": {"tableName": "t", "pollingInterval": "5 minutes", "surprise": 1}}


def test_invalid_cr_names_every_field_and_writes_nothing(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    with pytest.raises(InvalidInput) as info:
        store.apply([ESC, _invalid_scraper()])
    locs = {e.loc for e in info.value.errors}
    assert {"spec.pollingInterval", "spec.scraperDatabaseConfigRef", "spec.surprise"} <= locs
    assert "ScraperConfig default/bad (document 2) is invalid" in info.value.message
    assert "spec.pollingInterval" in info.value.message
    assert store.list() == []  # the valid first document was not written either


def test_unknown_kind_lists_supported_kinds(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        CrStore(tmp_path).apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}])
    assert "unknown kind 'ConfigMap'" in info.value.message
    for kind in ("ExporterScraperConfig", "ScraperConfig", "DatabaseConfig", "Secret"):
        assert kind in info.value.message


@pytest.mark.parametrize("name", ["DatabaseConfig", "databaseconfigs", "dbconf", "DBCONF"], ids=str)
def test_kinds_resolve_like_kubectl(tmp_path: Path, name: str) -> None:
    store = CrStore(tmp_path)
    store.apply(load_documents(ROOT / "crds" / "examples" / "databaseconfig.yaml"))
    assert [o["metadata"]["name"] for o in store.list(name)] == ["finops-db"]
    assert store.get(name, "finops", "finops-db") is not None


def test_unquoted_yaml_timestamps_stay_text(tmp_path: Path) -> None:
    """kubectl sends timestamps as strings; an unquoted one must not crash the store."""
    f = tmp_path / "t.yaml"
    f.write_text("a: 2024-01-01T00:00:00Z\nb: 2024-01-01\n")
    assert load_documents(f) == [{"a": "2024-01-01T00:00:00Z", "b": "2024-01-01"}]
