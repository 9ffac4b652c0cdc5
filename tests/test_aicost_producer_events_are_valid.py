"""`finops events generate` sends valid, realistic AI cost events that the aicost function accepts.

Cases:
- every generated event is a CloudEvent of type io.finops.aicost.usage whose data validates as
  AICostUsage and prices with the shipped tables (no unknown model or GPU type);
- the stream mixes llm-api, inference and gpu-job over several teams and projects, and bursts
  (a token spike, a runaway 64-GPU job) occur;
- the same seed gives the same events (ids included); another seed gives other ids;
- a batch encoded by encode_batch reads back, event by event, through functions.events;
- schedule() paces rate x duration events in batches;
- `finops events generate --target` (batched) and single binary events (batch 1, the Broker's
  mode) against a real aicost function on 127.0.0.1: every event accepted and stored once.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aicost_server import AICost, aicost_fixture  # noqa: F401 - the `aicost` fixture
from dbhandler_server import AUTH

from functions import events
from functions.cli import main as cli
from functions.codecs import ai_pricing
from functions.demo.aicost_producer import Generator, Sender, SendReport, encode_batch, schedule
from functions.models.aicost import AICostEvent

START = datetime(2025, 3, 10, 12, tzinfo=UTC)




def test_generated_events_validate_and_price() -> None:
    table = ai_pricing.price_table([])
    items = Generator(seed=1, burst_chance=0.01).batch(3000, START, timedelta(milliseconds=10))
    for item in items:
        assert item["type"] == events.AICOST_USAGE
        model = AICostEvent.model_validate({"id": item["id"], "time": item["time"], "data": item["data"]})
        priced = ai_pricing.price(model, table)
        assert priced.usd >= 0 and priced.currency == "USD"
    assert len({i["id"] for i in items}) == len(items)


def test_stream_is_varied_and_has_bursts() -> None:
    items = Generator(seed=2, burst_chance=0.01).batch(5000, START)
    sources = Counter(i["data"]["source"] for i in items)
    assert set(sources) == {"llm-api", "inference", "gpu-job"} and sources["llm-api"] > sources["gpu-job"]
    assert len({i["data"]["team"] for i in items}) >= 4
    assert len({(i["data"]["team"], i["data"]["project"]) for i in items}) >= 6
    bursts = Counter(i["data"].get("burst") for i in items if i["data"].get("burst"))
    assert bursts, "no burst in 5000 events at 1%"
    runaway = [i for i in items if i["data"].get("burst") == "runaway-gpu-job"]
    assert all(i["data"]["gpu"]["count"] == 64 for i in runaway)


@pytest.mark.parametrize(("a", "b", "same"), [(5, 5, True), (5, 6, False)], ids=["same-seed", "other-seed"])
def test_seed_makes_the_stream_reproducible(a: int, b: int, same: bool) -> None:
    first, second = Generator(seed=a).batch(200, START), Generator(seed=b).batch(200, START)
    assert (first == second) is same
    assert ({i["id"] for i in first} == {i["id"] for i in second}) is same


def test_batch_reads_back_through_functions_events() -> None:
    items = Generator(seed=3).batch(50, START)
    decoded = [events.from_dict(obj) for obj in json.loads(encode_batch(items))]
    assert [(e.id, e.type, e.data) for e in decoded] == [(i["id"], i["type"], i["data"]) for i in items]


@pytest.mark.parametrize(("rate", "duration", "batch", "expected"), [
    (100, 2, 30, [(0.0, 30), (0.3, 30), (0.6, 30), (0.9, 30), (1.2, 30), (1.5, 30), (1.8, 20)]),
    (10, 0.05, 100, [(0.0, 1)]),
], ids=["batches", "at-least-one"])
def test_schedule_paces_batches(rate: float, duration: float, batch: int, expected: list[tuple[float, int]]) -> None:
    got = list(schedule(rate, duration, batch))
    assert [n for _, n in got] == [n for _, n in expected]
    assert [o for o, _ in got] == pytest.approx([o for o, _ in expected])


def test_cli_generate_sends_batches_to_the_function(aicost: AICost, capsys: pytest.CaptureFixture[str]) -> None:
    token = str(aicost.log.parent / "auth-token")  # the caller token tests/dbhandler_server.py gave the function
    code = cli(["events", "generate", "--target", aicost.url, "--rate", "400", "--duration", "1", "--batch", "100",
                "--seed", "11", "--token-file", token])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sent 400 events" in out and "accepted 400, rejected 0" in out
    assert sum(n for _, n in aicost.totals().values()) == 400
    assert cli(["events", "generate", "--target", aicost.url, "--rate", "400", "--duration", "1", "--seed", "11",
                "--token-file", token]) == 0
    assert sum(n for _, n in aicost.totals().values()) == 400  # same seed: the same ids, stored once
    # ... at other event times, so other content: each is reported as a conflict, none as accepted
    assert "accepted 0, rejected 0, conflicted 400" in capsys.readouterr().out


def test_single_binary_events_are_accepted(aicost: AICost) -> None:
    items = Generator(seed=4).batch(20, START)
    report = SendReport()
    sender = Sender(aicost.url, batch=1, headers=AUTH)
    try:
        sender.send(items, report)
    finally:
        sender.close()
    assert (report.sent, report.accepted, report.rejected, report.failed_requests) == (20, 20, 0, 0), report.problems
    assert sum(n for _, n in aicost.totals().values()) == 20
