"""Showback reads correct totals back from a real embedded engine (CrateDB SQL through the crate client).

Cases: totals per currency equal the Decimal sums of the generated rows (to the cent) and count every
row (credits and taxes sharing Krateo's key included); provider, service, period and category lines
add up to the totals; team lines come from tags['team'] with NULL and `{}` merged into (untagged), and
the untagged share is untagged billed / billed; top resources are at most 10, by billed descending;
usage per resource has avg/max/points; a missing cost table is a `problems` line, not an exception;
a missing resource table leaves the costs intact; render prints every section with totals.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

import pytest

from functions.clients.db import Database, connect
from functions.demo import showback
from functions.demo.focus_rows import FOCUS_1_0_COLUMNS, focus_rows
from functions.storage import tables
from functions.storage.engine import Engine
from tests.embedded_sql_server import serve

ROWS = list(focus_rows(1500, seed=11))


def _load(db: Database) -> None:
    db.execute(tables.table_ddl("demo_cost", "cost"))
    db.execute(tables.table_ddl("demo_res", "resource"))
    cols = list(FOCUS_1_0_COLUMNS)

    def value(col: str, text: str) -> object:
        if col == "Tags":
            return json.loads(text)
        if col.lower() in tables.COST_DOUBLES:
            return float(text) if text else None
        return text

    stmt = f"INSERT INTO demo_cost ({', '.join(c.lower() for c in cols)}) VALUES ({', '.join('?' * len(cols))})"
    assert -2 not in db.executemany(stmt, [[value(c, r[c]) for c in cols] for r in ROWS])
    db.executemany("INSERT INTO demo_res (resourceid, metricname, timestamp, average, unit) VALUES (?, ?, ?, ?, ?)",
                   [["vm-1", "Percentage CPU", f"2026-10-01T0{h}:00:00Z", 10.0 * h, "Percent"] for h in range(1, 5)])


@pytest.fixture
def db() -> Iterator[Database]:
    engine = Engine()
    with serve(engine, {"crate": "pw"}) as url:
        database = connect(url, "crate", "pw")
        yield database
        database.close()
    engine.close()


@pytest.fixture
def loaded(db: Database) -> Database:
    _load(db)
    return db


def _sums(key: str = "") -> dict[tuple[str, str], Decimal]:
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in ROWS:
        out[(r[key] if key else "", r["BillingCurrency"])] += Decimal(r["BilledCost"])
    return out


def _close(a: float, b: Decimal) -> bool:
    return abs(Decimal(repr(a)) - b) < Decimal("0.005")


def test_totals_match_the_source_to_the_cent(loaded: Database) -> None:
    show = showback.summary(loaded)
    expected = _sums()
    assert {t.currency for t in show.totals} == {"USD", "EUR"} and not show.problems
    for t in show.totals:
        assert _close(t.billed, expected[("", t.currency)])
        assert t.rows == sum(1 for r in ROWS if r["BillingCurrency"] == t.currency)


@pytest.mark.parametrize(("field", "column"), [("by_provider", "ProviderName"), ("by_category", "ChargeCategory")],
                         ids=["provider", "category"])
def test_breakdowns_match_the_source(loaded: Database, field: str, column: str) -> None:
    lines = getattr(showback.summary(loaded), field)
    expected = _sums(column)
    assert {(line.key[0], line.currency) for line in lines} == set(expected)
    assert all(_close(line.billed, expected[(line.key[0], line.currency)]) for line in lines)


def test_services_and_periods_add_up_to_the_totals(loaded: Database) -> None:
    show = showback.summary(loaded)
    for t in show.totals:
        for lines in (show.by_service, show.by_period):
            assert abs(sum(x.billed for x in lines if x.currency == t.currency) - t.billed) < 0.005
    assert {line.key[0] for line in show.by_period} == {"2026-09", "2026-10"}


def test_teams_and_untagged_share(loaded: Database) -> None:
    show = showback.summary(loaded)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in ROWS:
        team = json.loads(r["Tags"]).get("team") or showback.UNTAGGED
        expected[(team, r["BillingCurrency"])] += Decimal(r["BilledCost"])
    assert {(line.key[0], line.currency) for line in show.by_team} == set(expected)
    assert all(_close(line.billed, expected[(line.key[0], line.currency)]) for line in show.by_team)
    totals = {t.currency: t.billed for t in show.totals}
    for currency, (billed, share) in show.untagged().items():
        assert _close(billed, expected[(showback.UNTAGGED, currency)])
        assert share == pytest.approx(billed / totals[currency])


def test_top_resources_and_usage(loaded: Database) -> None:
    show = showback.summary(loaded)
    assert len(show.top_resources) == 10
    billed = [line.billed for line in show.top_resources]
    assert billed == sorted(billed, reverse=True)
    assert [(u.resource_id, u.metric, u.unit, u.average, u.maximum, u.points) for u in show.usage] == [
        ("vm-1", "Percentage CPU", "Percent", 25.0, 40.0, 4)]


def test_missing_tables_are_reported_not_raised(db: Database) -> None:
    show = showback.summary(db)
    assert not show.totals and show.problems and "totals" in show.problems[0]
    db.execute(tables.table_ddl("demo_cost", "cost"))
    show = showback.summary(db, resource_table="absent_usage")
    assert not show.totals and any(p.startswith("usage") for p in show.problems)


def test_render_prints_every_section(loaded: Database) -> None:
    text = showback.render(showback.summary(loaded))
    for heading in ("Totals by currency", "By provider", "By service", "By team (tags['team'])",
                    "Untagged share", "Top 10 resources", "Usage per resource (demo_res)"):
        assert heading in text
    assert showback.UNTAGGED in text and "EUR" in text and "USD" in text
