"""Carbon intensity series per region (gCO2/kWh, hourly): the forecast and history tables the optimizer's
day-1 placement reads.

Both tables: `region STRING, "timestamp" TIMESTAMP, intensity DOUBLE`, read through the `crate` client
(CrateDB, or the handler's embedded /_sql); a missing table is no data, not an error, because a cluster
without carbon data still gets a (default) placement.
"""

from __future__ import annotations

from datetime import UTC, datetime

from functions.clients.db import Database
from functions.storage import tables
from functions.storage.dialect import quote_ident

Series = dict[str, list[tuple[datetime, float]]]
"""Per region, [(time, gCO2/kWh)], oldest first."""


class SqlCarbonData:
    """The forecast and history tables of one database, read by region and time range."""

    def __init__(self, db: Database, forecast_table: str, history_table: str) -> None:
        self._db = db
        self._forecast, self._history = tables.valid_table_name(forecast_table), tables.valid_table_name(history_table)

    def forecast(self, regions: list[str], start: datetime, end: datetime) -> Series:
        return self._read(self._forecast, regions, start, end)

    def history(self, regions: list[str], start: datetime, end: datetime) -> Series:
        return self._read(self._history, regions, start, end)

    def _read(self, table: str, regions: list[str], start: datetime, end: datetime) -> Series:
        if not regions or not self._db.table_exists(table):
            return {}
        marks = ", ".join("?" for _ in regions)
        result = self._db.execute(
            f'SELECT region, "timestamp", intensity FROM {quote_ident(table)} WHERE region IN ({marks}) '
            f'AND "timestamp" >= ? AND "timestamp" < ? ORDER BY region, "timestamp"',
            [*regions, _rfc3339(start), _rfc3339(end)])
        out: Series = {}
        for region, ts, value in result.rows:
            if value is not None:
                out.setdefault(str(region), []).append((datetime.fromtimestamp(ts / 1000, UTC), float(value)))
        return out


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
