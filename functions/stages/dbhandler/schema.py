"""The tables one upload touches: the target, its staging twin, and the staged-parts ledger.

Table shapes come from functions.storage.tables (one source of truth); this module only decides
which of them an upload needs and makes sure they (and any new label columns) exist, in SQL both
CrateDB and the embedded engine run: CREATE TABLE IF NOT EXISTS, information_schema.columns,
ALTER TABLE ADD COLUMN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from functions.clients.db import Database
from functions.errors import FieldError, FinopsError, InvalidInput
from functions.stages.dbhandler import columns
from functions.storage import tables
from functions.storage.dialect import quote_ident

PARTS_TABLE = "finops_upload_parts"
_PARTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {PARTS_TABLE} (target_table TEXT, finops_source TEXT, finops_run TEXT, "
    "finops_part INTEGER, finops_rows BIGINT, staged_at BIGINT, committed BOOLEAN)"
)
_PLAIN = re.compile(r"^[a-z][a-z0-9_]*$")


def table_name(raw: str) -> str:
    """The validated, lower-cased table name; anything else (injection included) is a 400."""
    if not raw:
        raise InvalidInput("Table name not specified", [FieldError("table", "required")])
    return tables.valid_table_name(raw)


def ensure_parts_table(db: Database) -> None:
    db.execute(_PARTS_DDL)


@dataclass
class Target:
    """One target table of a kind (cost | resource | generic) and what upload needs to know of it."""

    kind: str
    name: str

    @property
    def staging(self) -> str:
        return tables.staging_table(self.name)

    @property
    def sql_types(self) -> Mapping[str, str]:
        """Column -> CrateDB type of the known columns (tables.columns_for)."""
        return tables.columns_for(cast(tables.MetricType, self.kind))

    @property
    def types(self) -> Mapping[str, str]:
        """Typed columns as the converter names them (DOUBLE / TIMESTAMP / OBJECT / STRING)."""
        return {c: columns.OBJECT if t.startswith("OBJECT") else t for c, t in self.sql_types.items()}

    @property
    def required(self) -> Sequence[str]:
        """Columns a row cannot go without: the slice or row key that replacement relies on, and the
        amount every total sums (FOCUS makes BilledCost mandatory and not nullable)."""
        return {"cost": ("billingperiodstart", "billedcost"), "resource": ("timestamp",)}.get(self.kind, ())

    @property
    def keys(self) -> Sequence[str]:
        """Krateo's upsert key (its handler's ON CONFLICT key): legacy-mode and resource replacement match on it."""
        return tables.UPSERT_KEYS.get(self.kind, ())

    def ensure(self, db: Database, label_columns: Sequence[str]) -> None:
        """Target and staging exist and have every incoming column (new labels are STRING)."""
        ensure_parts_table(db)
        kind = cast(tables.MetricType, self.kind)
        db.execute(tables.table_ddl(self.name, kind))
        db.execute(tables.staging_ddl(self.name, kind))
        wanted = [*label_columns, *columns.BOOKKEEPING]
        self._add_missing(db, self.name, [c for c in wanted if c != tables.STAGING_PART])
        self._add_missing(db, self.staging, wanted)

    def commit_columns(self, db: Database) -> list[str]:
        """The staging columns the commit copies (all but the part number)."""
        return [c for c in _columns_of(db, self.staging) if c != tables.STAGING_PART and _PLAIN.match(c)]

    def _add_missing(self, db: Database, table: str, wanted: Sequence[str]) -> None:
        have = set(_columns_of(db, table))
        for col in wanted:
            if col in have:
                continue
            ctype = "INTEGER" if col == tables.STAGING_PART else self.sql_types.get(col, tables.STRING)
            try:
                db.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(col)} {ctype}")
            except FinopsError:
                if col not in _columns_of(db, table):  # a concurrent part may have added it first
                    raise


def _columns_of(db: Database, table: str) -> list[str]:
    res = db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'doc' AND table_name = ? "
        "ORDER BY ordinal_position",
        [table],
    )
    return [str(r[0]) for r in res.rows]
