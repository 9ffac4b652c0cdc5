"""Budgets fire exactly one io.finops.budget.exceeded per (budget, threshold, period), to a real sink.

A real database handler, the aicost function and an HTTP sink (standing in for the Broker, as K_SINK)
run on 127.0.0.1. Generated spend exceeds a daily budget on two days; it is sent in concurrent
batches, then every batch is redelivered. Cases:
- each threshold fires once per day, with the numbers (spend >= threshold x amount, amount, period);
- a late event (an earlier day, sent last) counts in its own period;
- a budget whose scope matches nothing never fires; a budget above its scope's spend (ml gpu-job: $10.50 of $100) fires nothing;
- redelivery and concurrency add no alert; the alerts arrive within a generous time bound;
- the fired alerts are recorded in the alerts table.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aicost_server import AICost, event, start_aicost
from loopback_http import Reply, Seen, Server, serve

TIME_BOUND_S = 60.0


def budget(name: str, amount: str, **scope: Any) -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "AICostBudget", "metadata": {"name": name, "namespace": "finops"},
            "spec": {"amount": amount, "period": "day", "thresholds": [0.5, 0.8, 1.0], **scope}}


BUDGETS = [budget("ml-daily", "40", team="ml"), budget("nobody", "1", team="nobody"),
           budget("ml-gpu-big", "100", team="ml", source="gpu-job")]


@pytest.fixture(name="stack")
def stack_fixture(tmp_path: Path) -> Iterator[tuple[AICost, Server]]:
    with serve(lambda _seen: Reply(202)) as sink:
        server = start_aicost(tmp_path, sink_url=sink.url, crs=BUDGETS)
        try:
            yield server, sink
        finally:
            server.stop()


def spend_events() -> list[dict[str, Any]]:
    """Team ml: 2025-05-06 $50 (25 x $2); 2025-05-07 $45 ($10.50 of T4 GPU-hours + $34.50)."""
    out = []
    for i in range(25):
        out.append(event({"team": "ml", "project": "p", "source": "vendor", "cost": {"amount": "2", "currency": "USD"}},
                         id=f"d1-{i}", time=f"2025-05-06T{i % 24:02d}:10:00Z"))
    for i in range(15):
        out.append(event({"team": "ml", "project": "p", "source": "gpu-job", "gpu": {"gpu_type": "T4", "count": 2, "hours": "1"}},
                         id=f"d2-gpu-{i}", time="2025-05-07T08:00:00Z"))  # 15 x 2 x $0.35 = $10.50
    for i in range(23):
        out.append(event({"team": "ml", "project": "q", "source": "vendor", "cost": {"amount": "1.5", "currency": "USD"}},
                         id=f"d2-{i}", time="2025-05-07T09:00:00Z"))  # $34.50 -> day 2 = $45
    return out


def alerts(sink: Server) -> list[dict[str, Any]]:
    return [json.loads(s.body) for s in list(sink.seen) if _type(s) == "io.finops.budget.exceeded"]


def _type(seen: Seen) -> str:
    return seen.headers.get("ce-type", "")


def test_each_threshold_fires_once_per_period(stack: tuple[AICost, Server]) -> None:
    server, sink = stack
    events = spend_events()
    batches = [events[i::4] for i in range(4)]
    started = time.monotonic()
    threads = [threading.Thread(target=lambda b=b: server.send(b)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    late = event({"team": "ml", "project": "p", "source": "vendor", "cost": {"amount": "21", "currency": "USD"}},
                 id="late", time="2025-05-05T23:59:00Z")
    assert server.send_one(late).status_code == 200
    for b in batches:  # redelivery of everything
        assert server.send(b).status_code == 200
    while len(alerts(sink)) < 7 and time.monotonic() - started < TIME_BOUND_S:
        time.sleep(0.1)
    latency = time.monotonic() - started
    got = alerts(sink)
    fired = sorted((a["budget"], a["periodLabel"], a["threshold"]) for a in got)
    assert fired == sorted([
        ("finops/ml-daily", "2025-05-05", 0.5),  # the late event: $21 of $40 in its own day
        ("finops/ml-daily", "2025-05-06", 0.5), ("finops/ml-daily", "2025-05-06", 0.8), ("finops/ml-daily", "2025-05-06", 1.0),
        ("finops/ml-daily", "2025-05-07", 0.5), ("finops/ml-daily", "2025-05-07", 0.8), ("finops/ml-daily", "2025-05-07", 1.0),
    ]), fired
    assert latency < TIME_BOUND_S
    for a in got:
        assert Decimal(a["spend"]) >= Decimal(a["amount"]) * Decimal(str(a["threshold"]))
        assert a["amount"] == "40" and a["period"] == "day" and a["scope"]["team"] == "ml"
        assert a["periodStart"].startswith(a["periodLabel"])
    assert len(server.db.sql("SELECT alertkey FROM ai_budget_alerts")) == 7

