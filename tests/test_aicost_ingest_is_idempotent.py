"""The aicost function stores each event once and answers every bad field, through real servers.

A real database handler (embedded engine) and the aicost target of functions/main.py run on
127.0.0.1 (tests/aicost_server.py). Cases:
- the same batch sent twice, then again shuffled and split into single binary events: the same totals
  and one row per event id;
- a batch with malformed events: 200, the good ones stored, one reason per bad field of each bad
  event (index, id, loc, msg);
- a request with nothing acceptable (single event and batch): 400 listing every bad field;
- an event in a currency without an FX rate is refused with a clear error; with a rate it is
  converted to USD and keeps its own currency in BilledCost;
- each stored row is FOCUS-shaped (ServiceCategory, tags, periods) and records the price used and its source;
- the published event JSON Schema is the model's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aicost_server import AICost, event, start_aicost

from functions.models.aicost import render_event_schema

REPO = Path(__file__).resolve().parent.parent
PRICING = {"apiVersion": "finops.krateo.io/v1", "kind": "AICostPricing", "metadata": {"name": "fx", "namespace": "finops"},
           "spec": {"fx": {"EUR": "1.25"}}}


@pytest.fixture(name="aicost")
def aicost_fixture(tmp_path: Path) -> Iterator[AICost]:
    server = start_aicost(tmp_path, crs=[PRICING])
    try:
        yield server
    finally:
        server.stop()


def good_events(n: int = 30) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        team, project = rng.choice(["ml", "search"]), rng.choice(["chat", "train"])
        kind = i % 3
        if kind == 0:
            data = {"source": "llm-api", "llm": {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000 + i,
                                                 "output_tokens": 50 + i, "cache_read_tokens": i}}
        elif kind == 1:
            data = {"source": "gpu-job", "gpu": {"gpu_type": "A100-80GB", "count": 1 + i % 8, "duration_seconds": 60 * i}}
        else:
            data = {"source": "vendor", "cost": {"amount": f"{i}.37", "currency": "EUR"}}
        out.append(event({"team": team, "project": project, **data, "jobId": f"j{i}"}, id=f"ev-{i}",
                         time=f"2025-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"))
    return out


def test_redelivery_and_reordering_give_the_same_totals(aicost: AICost) -> None:
    events = good_events()
    first = aicost.send(events)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == len(events)
    totals = aicost.totals()
    assert sum(n for _, n in totals.values()) == len(events)
    assert aicost.send(events).status_code == 200
    shuffled = events[:]
    random.Random(1).shuffle(shuffled)
    for chunk in (shuffled[:10], shuffled[10:20]):
        assert aicost.send(chunk).status_code == 200
    for ev in shuffled[20:]:
        assert aicost.send_one(ev).status_code == 200
    assert aicost.totals() == totals
    assert aicost.db.sql("SELECT COUNT(*) AS n, COUNT(DISTINCT x_eventid) AS d FROM ai_costs") == [[len(events), len(events)]]


def test_malformed_events_are_listed_and_the_good_ones_stored(aicost: AICost) -> None:
    good = good_events(3)
    bad = [
        event({"team": "ml", "source": "llm-api", "llm": {"provider": "openai", "model": "gpt-4o", "input_tokens": -5}}, id="bad-1"),
        event({"team": "ml", "project": "p", "source": "gpu-job", "gpu": {"gpu_type": "H100", "count": 2}}, id="bad-2"),
        event({"team": "ml", "project": "p", "source": "x", "cost": {"amount": "1", "currency": "JPY"}}, id="bad-3"),
        event({"team": "ml", "project": "p", "source": "x", "cost": {"amount": "1", "currency": "USD"}}, id="bad-4", type="io.other"),
        {"specversion": "1.0", "id": "bad-5"},
    ]
    resp = aicost.send([good[0], bad[0], good[1], bad[1], bad[2], bad[3], bad[4], good[2]])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 3
    reasons = {(e["index"], e["loc"]) for e in body["errors"]}
    assert {(1, "data.project"), (1, "data.llm.input_tokens"), (3, "data.gpu"), (4, "data.cost.currency"),
            (5, "type")} <= reasons
    assert any(e["index"] == 6 for e in body["errors"])
    assert all(e["msg"] for e in body["errors"])
    assert {e["id"] for e in body["errors"] if e["index"] == 4} == {"bad-3"}
    assert sorted(r[0] for r in aicost.db.sql("SELECT x_eventid FROM ai_costs")) == sorted(e["id"] for e in good)


@pytest.mark.parametrize("single", [True, False], ids=["single-event", "batch"])
def test_nothing_acceptable_is_400_with_every_field(aicost: AICost, single: bool) -> None:
    bad = event({"team": "", "project": "p", "source": "llm-api", "llm": {"provider": "openai", "model": "gpt-4o", "output_tokens": "x"}})
    resp = aicost.send_one(bad) if single else aicost.send([bad, bad | {"id": "other", "data": {"team": "t"}}])
    assert resp.status_code == 400, resp.text
    locs = {e["loc"] for e in resp.json()["errors"]}
    prefix = "" if single else "0."
    assert {f"{prefix}data.team", f"{prefix}data.llm.output_tokens"} <= locs
    if not single:
        assert {"1.data.project", "1.data.source"} <= locs


def test_unknown_currency_is_refused_and_known_ones_converted(aicost: AICost) -> None:
    resp = aicost.send_one(event({"team": "t", "project": "p", "source": "x", "cost": {"amount": "10", "currency": "CHF"}}))
    assert resp.status_code == 400
    msg = resp.json()["errors"][0]
    assert msg["loc"] == "data.cost.currency" and "no FX rate for CHF" in msg["msg"] and "spec.fx" in msg["msg"]
    assert aicost.send_one(event({"team": "t", "project": "p", "source": "x", "cost": {"amount": "10.10", "currency": "EUR"}}, id="eur")).status_code == 200
    assert aicost.db.sql("SELECT billedcost, billingcurrency, x_cost_usd_exact, x_fxrate FROM ai_costs WHERE x_eventid = 'eur'") == [
        [10.1, "EUR", "12.6250", "1.25"]]


def test_rows_are_focus_shaped_with_price_and_source(aicost: AICost) -> None:
    ev = event({"team": "ml", "project": "chat", "source": "llm-api", "llm": {"provider": "anthropic", "model": "claude-opus-4-1",
                "input_tokens": 2000, "output_tokens": 100}, "region": "eu"}, id="row", time="2025-02-28T23:59:59Z")
    assert aicost.send_one(ev).status_code == 200
    row = aicost.db.sql("SELECT servicecategory, billingcurrency, tags['team'], tags['region'], x_price, x_pricesource, "
                        "billingperiodstart, billingperiodend, chargeperiodstart, x_cost_usd FROM ai_costs WHERE x_eventid = 'row'")[0]
    assert row[:4] == ["AI and Machine Learning", "USD", "ml", "eu"]
    assert "$15/input MTok" in row[4] and row[5].startswith("genai-prices ") and "claude-opus-4-1" in row[5]
    assert row[6:9] == [1738368000000, 1740787200000, 1740787199000]  # Feb 2025; the event's time
    assert row[9] == pytest.approx(2000 * 15e-6 + 100 * 75e-6)


def test_published_event_schema_is_the_models() -> None:
    assert (REPO / "schemas" / "aicost-event.json").read_text(encoding="utf-8") == render_event_schema()
