"""Either half of an ExporterScraperConfig is optional, as in krateo's finops-operator-exporter CRD.

Cases:
- the model accepts exporter-only, scraper-only and both; a spec with neither (absent or null) is refused
  with one error at `spec` naming exporterConfig and scraperConfig; the CRD requires neither half (both
  nullable) but refuses an empty spec (`minProperties: 1`);
- PingSources: both halves -> `<name>-exporter` at the exporter's interval (note: the scrape follows the
  export); exporter-only -> the same without the note; scraper-only -> `<name>-scraper` at the scraper's
  interval, `finopstarget: scraper`; the local store swaps them when a config changes mode;
- routing (knative/base Triggers, as the local broker reads them): a scraper-only tick reaches the
  scraper only, an exporter tick the exporter only;
- the bridge: a scraper-only config is valid (its DatabaseConfig checked) and schedules the scraper; one
  with neither is refused naming both fields;
- the stages: the exporter has nothing to do for a scraper-only config; the scraper has nothing to do for
  an exporter-only one, and reads a scraper-only config's own api with its own metricType/generic;
- end to end through the real local stack (one stack for the module):
  - exporter-only: the export lands on GET /metrics/<ns>/<name> (one sample per source row); the
    io.finops.export.completed reaches the scraper, which answers an empty 200 ("nothing to do"); the CR
    is Ready=True from the export, with no lastUpload and no failure; nothing is dead-lettered;
  - scraper-only: applying it exports nothing (the exporter answers nothing to do, no snapshot), its
    `<name>-scraper` tick scrapes a foreign Prometheus endpoint (prometheus_client's own server) and its
    rows land, one per sample; the CR is Ready=True with lastUpload.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e.e2e_stack import DB_REF, NAMESPACE, E2EStack, database_docs, esc, secret, start_stack, wait_until
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from functions import bridge, events
from functions.clients import kube
from functions.demo.demo_apis import DemoCostApi
from functions.errors import InvalidInput, field_errors
from functions.local.broker import load_triggers
from functions.local.crstore import CrStore
from functions.local.scheduler import ping_event
from functions.local.supervisor import free_port
from functions.models import crdgen, crs
from functions.models.pingsources import pingsources_for, plan
from functions.models.refs import ConfigRef
from functions.models.registry import all_kinds
from functions.stages import exporter, scraper

REPO = Path(__file__).resolve().parent.parent
NS = "team-a"
DB = {"name": "db", "namespace": NS}
EXPORTER_HALF = {"api": {"path": "/costs.csv", "endpointRef": {"name": "cost-api", "namespace": NS}},
                 "metricType": "cost", "pollingInterval": "1h"}
SCRAPER_HALF = {"tableName": "t", "pollingInterval": "15m", "metricType": "generic",
                "generic": {"metricName": "room_temperature_celsius", "valueColumnIndex": 0},
                "api": {"path": "/metrics", "endpointRef": {"name": "prom", "namespace": NS}},
                "scraperDatabaseConfigRef": DB}


def config(name: str = "halves", *, exporter_half: bool = True, scraper_half: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if exporter_half:
        spec["exporterConfig"] = json.loads(json.dumps(EXPORTER_HALF))
    if scraper_half:
        spec["scraperConfig"] = json.loads(json.dumps(SCRAPER_HALF))
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
            "metadata": {"name": name, "namespace": NS, "uid": "uid-1"}, "spec": spec}


# ---- the model and the CRD ----------------------------------------------------------------------


@pytest.mark.parametrize(("exporter_half", "scraper_half"), [(True, False), (False, True), (True, True)],
                         ids=["exporter-only", "scraper-only", "both"])
def test_the_model_accepts_either_half_or_both(exporter_half: bool, scraper_half: bool) -> None:
    model = crs.ExporterScraperConfig.model_validate(config(exporter_half=exporter_half, scraper_half=scraper_half))
    assert (model.spec.exporter_config is not None) is exporter_half
    assert (model.spec.scraper_config is not None) is scraper_half


@pytest.mark.parametrize("spec", [{}, {"exporterConfig": None, "scraperConfig": None}], ids=["absent", "null"])
def test_a_spec_with_neither_half_is_refused_naming_both(spec: dict[str, Any]) -> None:
    doc = config() | {"spec": spec}
    with pytest.raises(ValidationError) as info:
        crs.ExporterScraperConfig.model_validate(doc)
    [error] = field_errors(info.value)
    assert error.loc == "spec"
    assert "exporterConfig" in error.msg and "scraperConfig" in error.msg


def test_the_crd_requires_neither_half_but_refuses_an_empty_spec() -> None:
    spec = crdgen.crd_schema(all_kinds()["ExporterScraperConfig"])["properties"]["spec"]
    assert "required" not in spec
    assert spec["minProperties"] == 1
    assert spec["properties"]["exporterConfig"]["nullable"] is True
    assert spec["properties"]["scraperConfig"]["nullable"] is True


# ---- PingSources and routing ----------------------------------------------------------------------


def test_both_halves_get_one_exporter_pingsource_noting_the_scrape_follows() -> None:
    [p] = plan(config())
    assert p.purpose == "exporter" and p.manifest["metadata"]["name"] == "halves-exporter"
    assert p.manifest["spec"]["schedule"] == "0 * * * *"
    assert "scraperConfig.pollingInterval (15m) has no separate timer" in p.note


def test_exporter_only_gets_one_exporter_pingsource_without_a_scraper_note() -> None:
    [p] = plan(config(scraper_half=False))
    assert p.purpose == "exporter" and p.manifest["metadata"]["name"] == "halves-exporter"
    assert p.manifest["spec"]["schedule"] == "0 * * * *"
    assert p.note == ""


def test_scraper_only_gets_one_scraper_pingsource_at_the_scrapers_interval() -> None:
    [p] = plan(config(exporter_half=False))
    ps = p.manifest
    assert p.purpose == "scraper" and ps["metadata"]["name"] == "halves-scraper"
    assert ps["spec"]["schedule"] == "*/15 * * * *"
    assert ps["metadata"]["annotations"]["finops.krateo.io/polling-interval"] == "15m0s"
    assert ps["spec"]["ceOverrides"]["extensions"] == {
        "finopstarget": "scraper", "kind": "ExporterScraperConfig", "crnamespace": NS, "crname": "halves"}
    assert json.loads(ps["spec"]["data"]) == {"kind": "ExporterScraperConfig", "namespace": NS, "name": "halves"}
    assert ps["metadata"]["ownerReferences"][0]["kind"] == "ExporterScraperConfig"


def test_the_local_store_swaps_the_pingsource_when_the_mode_changes(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply([config()])
    assert [p["metadata"]["name"] for p in store.pingsources()] == ["halves-exporter"]
    store.apply([config(exporter_half=False)])
    assert [p["metadata"]["name"] for p in store.pingsources()] == ["halves-scraper"]
    store.apply([config(scraper_half=False)])
    assert [p["metadata"]["name"] for p in store.pingsources()] == ["halves-exporter"]


@pytest.mark.parametrize(("exporter_half", "subscriber"), [(False, "scraper"), (True, "exporter")],
                         ids=["scraper-only-tick", "exporter-tick"])
def test_the_triggers_route_each_tick_to_its_function_only(exporter_half: bool, subscriber: str) -> None:
    triggers = load_triggers(REPO / "knative" / "base")
    [ps] = pingsources_for(config(exporter_half=exporter_half, scraper_half=not exporter_half))
    tick = ping_event(ps)
    attrs = {"type": tick.type, "source": tick.source, **{k: str(v) for k, v in tick.extensions.items()}}
    assert {t.service for t in triggers if t.matches(attrs)} == {subscriber}


# ---- the bridge -----------------------------------------------------------------------------------


def _lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    if kind == "DatabaseConfig" and (namespace, name) == (NS, "db"):
        return {"kind": kind}
    if kind == bridge.SECRET and name in ("cost-api", "prom"):
        return {"data": {}}
    return None


def test_the_bridge_schedules_a_scraper_only_config_and_refuses_neither() -> None:
    rec = bridge.reconcile(config(exporter_half=False), _lookup)
    assert rec.ok, rec.message
    assert [(s["pingSource"], s["purpose"]) for s in rec.schedules()] == [("halves-scraper", "scraper")]
    assert rec.event is not None and "exporterConfig" not in rec.event.data["spec"]

    missing_db = config(exporter_half=False)
    missing_db["spec"]["scraperConfig"]["scraperDatabaseConfigRef"] = {"name": "gone", "namespace": NS}
    assert [e.loc for e in bridge.reconcile(missing_db, _lookup).missing] == ["spec.scraperConfig.scraperDatabaseConfigRef"]

    neither = bridge.reconcile(config() | {"spec": {}}, _lookup)
    assert not neither.ok and neither.pingsources == []
    assert [e.loc for e in neither.errors] == ["spec"]
    assert "exporterConfig" in neither.message and "scraperConfig" in neither.message


# ---- the stages -----------------------------------------------------------------------------------


def test_the_stages_have_nothing_to_do_for_the_missing_half(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply([config("export-only", scraper_half=False), config("scrape-only", exporter_half=False)])
    reader = kube.LocalReader(tmp_path)
    export_only = ConfigRef("ExporterScraperConfig", NS, "export-only")
    scrape_only = ConfigRef("ExporterScraperConfig", NS, "scrape-only")

    assert exporter.load_config(scrape_only, reader) is None
    loaded = exporter.load_config(export_only, reader)
    assert loaded is not None and loaded.spec.exporter_config.metric_type == "cost"
    assert scraper.load_plan(export_only, reader) is None

    scrape = scraper.load_plan(scrape_only, reader)
    assert scrape is not None and scrape.api is not None and scrape.api.endpoint_ref is not None
    assert (scrape.source, scrape.table, scrape.metric_type) == (str(scrape_only), "t", "generic")
    assert scrape.generic is not None and scrape.generic.metric_name == "room_temperature_celsius"
    assert scrape.api.path == "/metrics" and scrape.api.endpoint_ref.name == "prom"


def test_a_stored_config_with_neither_half_is_invalid_input_for_both_stages() -> None:
    class Reader:
        def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return config() | {"spec": {}}

        def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
            return None

        def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
            return []

    ref = ConfigRef("ExporterScraperConfig", NS, "halves")
    for load in (exporter.load_config, scraper.load_plan):
        with pytest.raises(InvalidInput) as info:
            load(ref, Reader())
        assert [e.loc for e in info.value.errors] == ["spec"]


# ---- end to end through the local stack -----------------------------------------------------------


class Foreign:
    """A foreign Prometheus text endpoint: prometheus_client's own HTTP server and a real registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.temperature = Gauge("room_temperature_celsius", "Room temperature.", ["room"], registry=self.registry)
        Gauge("unrelated_things", "Another family.", registry=self.registry).set(7)
        self.temperature.labels("lab").set(21.5)
        self.temperature.labels("office").set(-3.25)
        self.temperature.labels("cellar").set(12.0)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def samples(self) -> dict[str, float]:
        body = httpx.get(self.url + "/metrics", timeout=10).text
        return {s.labels["room"]: s.value for fam in text_string_to_metric_families(body)
                for s in fam.samples if s.name == "room_temperature_celsius"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2EStack, DemoCostApi, Foreign]]:
    foreign = Foreign()
    server, thread = start_http_server(foreign.port, addr="127.0.0.1", registry=foreign.registry)
    with DemoCostApi(rows=40) as cost:
        stack = start_stack(Path(tmp_path_factory.mktemp("halves")))
        try:
            stack.apply(secret("halves-cost", {"server-url": cost.url, "token": cost.token}),
                        secret("halves-prom", {"server-url": foreign.url}), *database_docs())
            yield stack, cost, foreign
        finally:
            stack.stop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _status(stack: E2EStack, ref: str) -> dict[str, Any]:
    got = stack.finops("get", ref, "-o", "json")
    assert got.rc == 0, got.text
    return dict(json.loads(got.out).get("status") or {})


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    assert conditions["Synced"]["status"] == conditions["Ready"]["status"], conditions
    return dict(conditions["Ready"])


def test_exporter_only_serves_metrics_and_the_scraper_has_nothing_to_do(
        env: tuple[E2EStack, DemoCostApi, Foreign]) -> None:
    stack, cost, _ = env
    doc = esc("export-only", "/focus/export.csv", "halves-cost", "unused")
    del doc["spec"]["scraperConfig"]
    stack.apply(doc)  # cr.applied: exports, and the scraper answers the export.completed
    ref = f"ExporterScraperConfig/{NAMESPACE}/export-only"

    result = stack.run(ref)
    assert result.rc == 0, result.text
    assert "reply io.finops.export.completed" in result.out
    scrape_line = next(line for line in result.out.splitlines() if "-> scraper:" in line)
    assert "HTTP 200" in scrape_line and scrape_line.endswith(", ok"), result.out  # ok, and no reply event

    resp = httpx.get(f"{stack.url('exporter')}/metrics/{NAMESPACE}/export-only", headers=stack.auth(), timeout=30)
    assert resp.status_code == 200 and resp.headers["x-finops-snapshot"] == "present"
    samples = [s for fam in text_string_to_metric_families(resp.text) for s in fam.samples]
    with cost.csv_path.open(newline="", encoding="utf-8") as fh:
        assert len(samples) == sum(1 for _ in csv.DictReader(fh)) == 40  # one gauge sample per source row

    completed = events.new(events.EXPORT_COMPLETED, "/test", data={"config": ref, "metricType": "cost"}, subject=ref)
    answer = stack.post_event("scraper", completed)
    assert (answer.status_code, answer.content) == (200, b"")
    assert answer.headers["x-finops-result"] == "nothing to do"

    status = _status(stack, ref)
    ready = _ready(status)
    assert ready["status"] == "True" and ready["message"].startswith("exported"), ready
    assert "lastExport" in status and "lastUpload" not in status
    assert stack.deadletters() == []


def test_scraper_only_scrapes_its_foreign_endpoint_on_its_own_tick(
        env: tuple[E2EStack, DemoCostApi, Foreign]) -> None:
    stack, _, foreign = env
    doc = {"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
           "metadata": {"name": "scrape-only", "namespace": NAMESPACE},
           "spec": {"scraperConfig": {
               "tableName": "scrape_only", "pollingInterval": "5m", "metricType": "generic",
               "generic": {"metricName": "room_temperature_celsius", "valueColumnIndex": 0},
               "api": {"path": "/metrics", "verb": "GET", "endpointRef": {"name": "halves-prom", "namespace": NAMESPACE}},
               "scraperDatabaseConfigRef": DB_REF}}}
    ref = f"ExporterScraperConfig/{NAMESPACE}/scrape-only"
    path = stack.tmp / "scrape-only.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    base = stack.broker_stats()
    applied = stack.finops("apply", "-f", str(path))  # its cr.applied reaches the exporter only: one delivery
    assert applied.rc == 0, applied.text
    wait_until(lambda: stack.broker_stats()["delivered"] > base["delivered"], timeout=60, what="the exporter's answer")
    assert stack.broker_stats()["failed"] == base["failed"]
    assert [p["metadata"]["name"] for p in CrStore(stack.state).pingsources()
            if p["metadata"]["name"].startswith("scrape-only")] == ["scrape-only-scraper"]
    none = httpx.get(f"{stack.url('exporter')}/metrics/{NAMESPACE}/scrape-only", headers=stack.auth(), timeout=30)
    assert none.headers["x-finops-snapshot"] == "none"

    tick = events.new(events.PING, "/test", data={"kind": "ExporterScraperConfig", "namespace": NAMESPACE,
                                                  "name": "scrape-only"}, finopstarget="exporter")
    answer = stack.post_event("exporter", tick)  # a stray exporter tick: nothing to do, no failure
    assert (answer.status_code, answer.content) == (200, b"")

    result = stack.run(ref)
    assert result.rc == 0, result.text
    assert "scraper-ping -> scraper" in result.out and "reply io.finops.upload.completed" in result.out
    assert "-> exporter" not in result.out  # the chain never touches the exporter

    expected = foreign.samples()
    rows = stack.sql("SELECT room, value FROM scrape_only")
    assert dict((r[0], r[1]) for r in rows) == expected and len(rows) == len(expected) == 3

    status = _status(stack, ref)
    ready = _ready(status)
    assert ready["status"] == "True" and ready["message"].startswith("uploaded 3 "), ready
    assert status["lastUpload"]["table"] == "scrape_only" and "lastExport" not in status
    assert stack.deadletters() == []
