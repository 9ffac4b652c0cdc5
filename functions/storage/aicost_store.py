"""AI cost tables: one FOCUS-shaped row per event (keyed by event id), totals and budget spend by SQL.

Layout of the events table (default `ai_costs`, FINOPS_AICOST_TABLE): every FOCUS column of the
cost table (functions.storage.tables.cost_columns, so `SELECT ... FROM focus_costs UNION ALL SELECT
... FROM ai_costs` works) plus

| column | type | meaning |
|---|---|---|
| `x_eventid` | STRING PRIMARY KEY | the CloudEvent id: a redelivered event is not inserted again |
| `x_team`, `x_project`, `x_source` | STRING | the event's attribution (also in `tags`) |
| `x_cost_usd` | DOUBLE | the cost in USD (BilledCost and EffectiveCost stay in BillingCurrency) |
| `x_cost_usd_exact` | STRING | the same, as the exact decimal text |
| `x_fxrate` | STRING | USD per unit of BillingCurrency used (1 for USD) |
| `x_price`, `x_pricesource` | STRING | the price applied and where it came from (genai-prices version, our GPU table, an AICostPricing CR) |
| `x_eventtime` | TIMESTAMP | the event's time (= ChargePeriodStart) |
| `x_contenthash` | STRING | SHA-256 of the event's canonical content (type, source, subject, time, data): an id that comes back with other content is a conflict, not a duplicate |

Totals are NOT a second table: they are `SUM(x_cost_usd)` over this table, grouped by
(x_team, x_project, x_source) at read time (`totals()`). A counter table updated beside the insert
cannot stay right on CrateDB, which has no transactions: a retry after a partial failure would count
twice. The primary key makes every insert idempotent, so the sums are right under redelivery, out of
order arrival and concurrent instances, and any instance answers the same global totals. The first
content stored for an id stays; `content_hashes()` reads back what is stored after the insert, so a
later event with that id and other content (a forgery sent first, or a producer bug) is told apart
from a redelivery, whichever instance or request won the insert.

Fired budget alerts live in `ai_budget_alerts` (FINOPS_AICOST_ALERTS_TABLE) keyed by
`alertkey = <ns>/<name>|<threshold>|<period start>`: the single-row INSERT that wins the key is the
one that emits the alert (exactly once under redelivery and concurrency).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from functions.clients.db import Database, DatabaseError, DuplicateKey
from functions.storage.dialect import quote_ident
from functions.storage.tables import (
    DOUBLE,
    STRING,
    TIMESTAMP,
    cost_columns,
    create_table,
    valid_table_name,
)

EXTRA_COLUMNS: dict[str, str] = {
    "x_eventid": f"{STRING} PRIMARY KEY", "x_team": STRING, "x_project": STRING, "x_source": STRING,
    "x_cost_usd": DOUBLE, "x_cost_usd_exact": STRING, "x_fxrate": STRING, "x_price": STRING,
    "x_pricesource": STRING, "x_eventtime": TIMESTAMP, "x_contenthash": STRING,
}
ALERT_COLUMNS: dict[str, str] = {
    "alertkey": f"{STRING} PRIMARY KEY", "budget": STRING, "threshold": DOUBLE, "period": STRING,
    "periodstart": TIMESTAMP, "periodend": TIMESTAMP, "spend": DOUBLE, "amount": DOUBLE,
    "firedat": TIMESTAMP, "triggerevent": STRING,
}


def event_columns() -> dict[str, str]:
    """Column -> CrateDB type of the AI cost events table."""
    return {**EXTRA_COLUMNS, **cost_columns()}


ROW_COLUMNS: tuple[str, ...] = tuple(event_columns())
"""The order of the values in a row handed to `insert_events` (one entry per column)."""


def ensure_tables(db: Database, table: str, alerts_table: str) -> None:
    """CREATE TABLE IF NOT EXISTS for both tables (idempotent; cheap enough to run per cold start);
    a table from before content hashes were kept gets the column (its old rows stay NULL)."""
    db.execute(create_table(table, event_columns()))
    db.execute(create_table(alerts_table, ALERT_COLUMNS))
    found = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
                       [valid_table_name(table), "x_contenthash"])
    if not found.rows:
        try:
            db.execute(f"ALTER TABLE {quote_ident(valid_table_name(table))} ADD COLUMN x_contenthash {STRING}")
        except DatabaseError:
            again = db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? AND "
                               "column_name = ?", [valid_table_name(table), "x_contenthash"])
            if not again.rows:  # not a concurrent instance that added it first
                raise


def insert_events(db: Database, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (values in ROW_COLUMNS order) in one bulk request; known event ids are skipped."""
    if not rows:
        return
    name = quote_ident(valid_table_name(table))
    cols = ", ".join(quote_ident(c) for c in ROW_COLUMNS)
    marks = ", ".join("?" for _ in ROW_COLUMNS)
    stmt = f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT (x_eventid) DO NOTHING"
    results = db.executemany(stmt, rows)
    failed = [i for i, r in enumerate(results) if r == -2]
    if failed:
        raise DatabaseError(f"{len(failed)} of {len(rows)} AI cost rows failed to insert (first: row {failed[0]})")
    db.execute(f"REFRESH TABLE {name}")  # CrateDB: make them visible to the aggregations that follow


def content_hashes(db: Database, table: str, event_ids: Sequence[str], chunk: int = 2000) -> dict[str, str | None]:
    """The stored content hash of each of these event ids that is stored (None: stored before hashes were kept)."""
    name = quote_ident(valid_table_name(table))
    unique = list(dict.fromkeys(event_ids))
    out: dict[str, str | None] = {}
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        result = db.execute(f"SELECT x_eventid, x_contenthash FROM {name} WHERE x_eventid IN "
                            f"({', '.join('?' for _ in part)})", part)
        out.update({str(r[0]): (str(r[1]) if r[1] is not None else None) for r in result.rows})
    return out


@dataclass(frozen=True)
class Total:
    """Durable totals of one (team, project, source): USD spent and events stored."""

    team: str
    project: str
    source: str
    usd: float
    events: int


def totals(db: Database, table: str) -> list[Total]:
    """Global totals per (team, project, source), summed from the events table (the metric's source)."""
    name = quote_ident(valid_table_name(table))
    result = db.execute(
        f"SELECT x_team, x_project, x_source, SUM(x_cost_usd) AS usd, COUNT(*) AS events FROM {name} "
        "GROUP BY x_team, x_project, x_source ORDER BY x_team, x_project, x_source"
    )
    return [Total(str(r[0]), str(r[1]), str(r[2]), float(r[3] or 0.0), int(r[4])) for r in result.rows]


def spend(db: Database, table: str, scope: dict[str, str | None], start: datetime, end: datetime) -> Decimal:
    """USD spent in [start, end) by event time within a scope (team/project/source; None = any)."""
    name = quote_ident(valid_table_name(table))
    where = ["x_eventtime >= ?", "x_eventtime < ?"]
    args: list[Any] = [_ms(start), _ms(end)]
    for key in ("team", "project", "source"):
        value = scope.get(key)
        if value is not None:
            where.append(f"x_{key} = ?")
            args.append(value)
    result = db.execute(f"SELECT SUM(x_cost_usd) AS usd FROM {name} WHERE {' AND '.join(where)}", args)
    value = result.rows[0][0] if result.rows else None
    return Decimal(repr(float(value))) if value is not None else Decimal(0)


def claim_alert(db: Database, alerts_table: str, row: dict[str, Any]) -> bool:
    """Record a fired alert; True if this call recorded it, False if it was already recorded."""
    name = quote_ident(valid_table_name(alerts_table))
    cols = list(ALERT_COLUMNS)
    stmt = f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    try:
        db.execute(stmt, [row[c] for c in cols])
    except DuplicateKey:
        return False
    return True


def release_alert(db: Database, alerts_table: str, key: str) -> None:
    """Forget a claimed alert whose event could not be delivered, so a retry fires it again."""
    db.execute(f"DELETE FROM {quote_ident(valid_table_name(alerts_table))} WHERE alertkey = ?", [key])


def fired_alerts(db: Database, alerts_table: str) -> list[dict[str, Any]]:
    """Every recorded alert (for tests, the demo and dashboards)."""
    result = db.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM {quote_ident(valid_table_name(alerts_table))} ORDER BY firedat, alertkey")
    return [dict(zip(result.cols, r, strict=True)) for r in result.rows]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
