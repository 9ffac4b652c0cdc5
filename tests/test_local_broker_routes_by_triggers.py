"""The local broker routes CloudEvents as the Triggers in knative/ say, to real loopback sinks.

Cases:
- the knative/ manifests load: four Triggers, each subscriber a Service of 20-services.yaml;
- PingSource ticks go by their `finopstarget` extension (exporter vs scraper), never both;
- io.finops.cr.applied reaches the exporter only for kind=ExporterScraperConfig;
- a binary-mode reply (io.finops.export.completed) is published again and reaches the scraper (chained);
- a structured-mode event is accepted at ingress; a body that is not a CloudEvent is a 400;
- without ?wait the broker answers 202 and delivers in the background;
- 503 is retried per the Trigger's delivery, then dead-lettered to <state>/deadletter.jsonl;
- 400 is final: one attempt, then dead-lettered; a Service with no local URL is dead-lettered too;
- a 200 whose body is not a CloudEvent fails the delivery as in Knative (its broker filter answers
  502): retried, then dead-lettered, the reason saying so; an empty 200 is delivered;
- with a caller token (the local stack's), ingress without it or with another one is a 401 answered
  before the body is sent, one over the body limit a 413; with it the event is delivered, carrying it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_http import Reply, Seen, Server, serve

from functions import events
from functions.local.broker import MAX_BODY, Broker, load_manifests, load_triggers, parse_iso_duration

KNATIVE = Path(__file__).resolve().parent.parent / "knative" / "base"


@pytest.fixture
def sinks() -> Iterator[dict[str, Server]]:
    completed = events.new(events.EXPORT_COMPLETED, "/exporter", data={"config": "ExporterScraperConfig/ns/a"})
    headers, body = events.to_binary(completed)

    def exporter(seen: Seen) -> Reply:
        if seen.headers.get("ce-type") == events.PING:
            return Reply(200, body, headers)  # an export cycle that replies with its completion event
        return Reply(202)

    with ExitStack() as stack:
        yield {"exporter": stack.enter_context(serve(exporter)),
               "scraper": stack.enter_context(serve(Reply(200)))}  # an empty 200: delivered, no reply


@pytest.fixture
def broker(sinks: dict[str, Server], tmp_path: Path) -> Iterator[Broker]:
    urls = {name: s.url for name, s in sinks.items()}
    b = Broker(load_triggers(KNATIVE), urls.get, tmp_path)
    b.start()
    yield b
    b.stop()


def _post(broker: Broker, event: events.Event, wait: bool = True) -> httpx.Response:
    headers, body = events.to_binary(event)
    return httpx.post(broker.url + ("/?wait=true" if wait else "/"), headers=headers, content=body, timeout=30)


def test_knative_triggers_name_existing_services() -> None:
    services = {d["metadata"]["name"] for d in load_manifests(KNATIVE) if d["kind"] == "Service"}
    triggers = load_triggers(KNATIVE)
    assert {"exporter-ping", "exporter-cr-applied", "scraper-export-completed", "scraper-ping"} <= {t.name for t in triggers}
    for t in triggers:
        assert t.service in services
        # the runs' Triggers retry longer: a live run answers 503 until its record is stale (time limit + 60 s)
        longer = t.name in ("inference-runner-ping", "inference-runner-cr-applied")
        assert t.delivery.retry == (10 if longer else 5), t.name
        assert t.delivery.dead_letter == "deadletter"


@pytest.mark.parametrize("target", ["exporter", "scraper"], ids=str)
def test_ping_goes_by_finopstarget(broker: Broker, sinks: dict[str, Server], target: str) -> None:
    ping = events.new(events.PING, "/apis/v1/namespaces/ns/pingsources/a", data={"kind": "X"}, finopstarget=target)
    answer = _post(broker, ping).json()
    assert answer["ok"] and answer["deliveries"][0]["trigger"] == f"{target}-ping"
    other = "scraper" if target == "exporter" else "exporter"
    assert [s.headers["ce-type"] for s in sinks[target].seen][0] == events.PING
    assert all(s.headers["ce-type"] != events.PING for s in sinks[other].seen)


def test_exporter_reply_is_chained_to_the_scraper(broker: Broker, sinks: dict[str, Server]) -> None:
    ping = events.new(events.PING, "/ping", data={"kind": "ExporterScraperConfig"}, finopstarget="exporter")
    answer = _post(broker, ping).json()
    chain = [(d["trigger"], d["depth"], d["reply_type"]) for d in answer["deliveries"]]
    assert chain == [("exporter-ping", 0, events.EXPORT_COMPLETED), ("scraper-export-completed", 1, None)]
    assert sinks["scraper"].seen[0].headers["ce-type"] == events.EXPORT_COMPLETED
    assert json.loads(sinks["scraper"].seen[0].body) == {"config": "ExporterScraperConfig/ns/a"}
    assert broker.stats()["replies"] == 1


@pytest.mark.parametrize("kind,routed", [("ExporterScraperConfig", True), ("ScraperConfig", False)], ids=str)
def test_cr_applied_goes_by_kind(broker: Broker, sinks: dict[str, Server], kind: str, routed: bool) -> None:
    applied = events.new(events.CR_APPLIED, "/crstore", data={"kind": kind}, subject=f"{kind}/ns/a", kind=kind)
    answer = _post(broker, applied).json()
    assert [d["trigger"] for d in answer["deliveries"]] == (["exporter-cr-applied"] if routed else [])
    assert len(sinks["exporter"].seen) == int(routed)


def test_structured_ingress_and_garbage(broker: Broker, sinks: dict[str, Server]) -> None:
    headers, body = events.to_structured(events.new(events.PING, "/p", data={}, finopstarget="scraper"))
    resp = httpx.post(broker.url + "/?wait=true", headers=headers, content=body)
    assert resp.json()["deliveries"][0]["trigger"] == "scraper-ping"
    assert httpx.post(broker.url, content=b"{}", headers={"content-type": "application/json"}).status_code == 400


def test_background_delivery(broker: Broker, sinks: dict[str, Server]) -> None:
    resp = _post(broker, events.new(events.PING, "/p", data={}, finopstarget="scraper"), wait=False)
    assert resp.status_code == 202
    deadline = time.monotonic() + 10
    while not sinks["scraper"].seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sinks["scraper"].seen


def _fast_triggers(tmp_path: Path) -> Path:
    folder = tmp_path / "knative"
    folder.mkdir()
    (folder / "30-triggers.yaml").write_text("""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: flaky}
spec:
  broker: default
  filter: {attributes: {type: io.finops.test}}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: flaky}}
  delivery: {retry: 2, backoffPolicy: linear, backoffDelay: PT0.01S,
             deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: deadletter}}}
""")
    return folder


def _one_event_to(sink: Server, tmp_path: Path) -> dict[str, Any]:
    """One io.finops.test event through a broker whose only Trigger (retry 2, fast) delivers to `sink`."""
    b = Broker(load_triggers(_fast_triggers(tmp_path)), {"flaky": sink.url}.get, tmp_path)
    b.start()
    try:
        answer: dict[str, Any] = _post(b, events.new("io.finops.test", "/t", data={"n": 1})).json()
        return answer
    finally:
        b.stop()


@pytest.mark.parametrize("status,attempts", [(503, 3), (429, 3), (404, 3), (400, 1)], ids=str)
def test_retries_then_dead_letter(tmp_path: Path, status: int, attempts: int) -> None:
    with serve(Reply(status, b"nope")) as flaky:
        answer = _one_event_to(flaky, tmp_path)
    delivery = answer["deliveries"][0]
    assert (delivery["ok"], delivery["status"], delivery["attempts"], delivery["dead_lettered"]) == (False, status, attempts, True)
    assert len(flaky.seen) == attempts
    letters = [json.loads(line) for line in (tmp_path / "deadletter.jsonl").read_text().splitlines()]
    assert letters[0]["trigger"] == "flaky" and letters[0]["event"]["data"] == {"n": 1}
    assert letters[0]["sink"] == "deadletter"


def test_unresolved_service_is_dead_lettered(tmp_path: Path) -> None:
    b = Broker(load_triggers(_fast_triggers(tmp_path)), lambda _name: None, tmp_path)
    b.start()
    try:
        answer = _post(b, events.new("io.finops.test", "/t", data={})).json()
    finally:
        b.stop()
    assert answer["failed"] == 1 and "no local URL" in answer["deliveries"][0]["error"]
    assert (tmp_path / "deadletter.jsonl").exists()


@pytest.mark.parametrize("text,seconds", [("PT1S", 1.0), ("PT0.5S", 0.5), ("PT1M30S", 90.0), ("P1D", 86400.0)], ids=str)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_iso_duration(text) == seconds


def test_a_non_cloudevent_body_fails_the_delivery_as_in_knative(tmp_path: Path) -> None:
    with serve(Reply(200, b'{"rows": 1}', {"content-type": "application/json"})) as chatty:
        answer = _one_event_to(chatty, tmp_path)
    delivery = answer["deliveries"][0]
    assert delivery["ok"] is False and delivery["attempts"] == 3 and delivery["dead_lettered"] is True
    assert "not a CloudEvent" in delivery["error"]
    assert len(chatty.seen) == 3


def _head_only(url: str, headers: dict[str, str]) -> bytes:
    """Send only a request's head (a Content-Length promising 200 MB) and read what comes back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /?wait=true HTTP/1.1\r\nHost: x\r\nContent-Length: {200 << 20}\r\n{head}\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_with_a_token_only_callers_holding_it_get_in(sinks: dict[str, Server], tmp_path: Path) -> None:
    b = Broker(load_triggers(KNATIVE), {n: s.url for n, s in sinks.items()}.get, tmp_path, token=lambda: "t0ken")
    b.start()
    try:
        ping = events.new(events.PING, "/p", data={}, finopstarget="scraper")
        headers, body = events.to_binary(ping)
        for sent in ({}, {"Authorization": "Bearer other"}, {"Authorization": "Basic dDBrZW4="}):
            refused = httpx.post(b.url + "/?wait=true", headers={**headers, **sent}, content=body, timeout=10)
            assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"], refused.text
        assert sinks["scraper"].seen == [] and b.stats()["received"] == 0
        assert _head_only(b.url, {}).startswith(b"HTTP/1.0 401")  # answered before the 200 MB arrive
        assert _head_only(b.url, {"Authorization": "Bearer t0ken"}).startswith(b"HTTP/1.0 413")
        assert MAX_BODY < (200 << 20)
        ok = httpx.post(b.url + "/?wait=true", headers={**headers, "Authorization": "Bearer t0ken"}, content=body, timeout=10)
        assert ok.status_code == 200 and ok.json()["ok"], ok.text
        assert sinks["scraper"].seen[0].headers["authorization"] == "Bearer t0ken"
    finally:
        b.stop()
