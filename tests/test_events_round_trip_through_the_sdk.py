"""CloudEvents are built and read with the SDK, in binary, structured and batch modes.

Cases: binary round trip keeps type/source/subject/data/extensions; structured round trip; a batch
body is split and each element read by the SDK; non-events and non-array batches are refused with
InvalidInput; every catalogue type sits under io.finops. or is the PingSource type.
"""

from __future__ import annotations

import json

import pytest

from functions import events
from functions.errors import InvalidInput


def test_binary_mode_round_trip_keeps_every_attribute() -> None:
    ev = events.new(events.EXPORT_COMPLETED, "/finops/exporter", {"config": "ExporterScraperConfig/finops/a", "rows": 3}, subject="x", kind="ExporterScraperConfig")
    headers, body = events.to_binary(ev)
    assert headers["ce-type"] == events.EXPORT_COMPLETED
    back = events.from_http(headers, body)
    assert (back.type, back.source, back.subject, back.id) == (ev.type, ev.source, "x", ev.id)
    assert back.data == {"config": "ExporterScraperConfig/finops/a", "rows": 3}
    assert back.extensions["kind"] == "ExporterScraperConfig"


def test_structured_mode_round_trip() -> None:
    ev = events.new(events.CR_APPLIED, "/bridge", {"kind": "ScraperConfig", "metadata": {"name": "n"}}, subject="ScraperConfig/ns/n")
    headers, body = events.to_structured(ev)
    back = events.from_http(headers, body)
    assert back.type == events.CR_APPLIED and back.data["metadata"]["name"] == "n"


def test_batch_is_split_and_each_event_read_by_the_sdk() -> None:
    items = [
        {"specversion": "1.0", "type": events.PING, "source": "/ping", "id": str(i), "data": {"kind": "ScraperConfig", "namespace": "n", "name": f"s{i}"}}
        for i in range(3)
    ]
    got = events.from_batch(json.dumps(items).encode())
    assert [e.id for e in got] == ["0", "1", "2"]
    assert got[2].data["name"] == "s2"


@pytest.mark.parametrize(
    "headers, body",
    [({"content-type": "application/json"}, b'{"hello": 1}'), ({}, b"not json")],
    ids=["json-without-ce-attributes", "garbage"],
)
def test_non_events_are_refused_clearly(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(InvalidInput):
        events.from_http(headers, body)


def test_batch_must_be_an_array() -> None:
    with pytest.raises(InvalidInput, match="array"):
        events.from_batch(b'{"type": "x"}')


def test_catalogue_types_are_namespaced() -> None:
    for type_ in events.CATALOGUE:
        assert type_.startswith(events.PREFIX) or type_ == events.PING
