"""Table layouts (CrateDB dialect), Krateo's upsert keys and identifier validation.

The DDL runs unchanged on CrateDB and, through functions.storage.dialect, on the embedded engine.
Columns keep Krateo's lower-case names and types (Krateo's finops-database-handler DDL) so existing notebooks keep working;
the cost table has NO primary key: rows sharing Krateo's upsert key (credits, taxes, adjustments)
must all be kept, and idempotency comes from snapshot replacement by (finops_source, period).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from functions.errors import FieldError, InvalidInput
from functions.models import focus_columns
from functions.models.focus import FOCUS_FIELDS
from functions.storage.dialect import quote_ident

MetricType = Literal["cost", "resource", "generic"]

STRING, DOUBLE, TIMESTAMP, OBJECT = "STRING", "DOUBLE", "TIMESTAMP", "OBJECT(DYNAMIC)"

KRATEO_COLUMNS: tuple[str, ...] = tuple(column for _, column, _ in FOCUS_FIELDS)
"""Krateo's 50 cost-table columns in Krateo's order (the FocusConfig schema): the table's first columns."""

FOCUS_COLUMNS: tuple[str, ...] = KRATEO_COLUMNS + tuple(
    c.name for c in focus_columns.CATALOGUE if c.name not in KRATEO_COLUMNS
)
"""Every FOCUS column of the cost table, stored lower-cased: Krateo's 50 first (Krateo's notebooks and
tables keep their columns), then every other FOCUS 1.0-1.3 column of the catalogue, so a 1.3 file's
columns are typed columns too. ContractedUnitCost is Krateo's own (FOCUS has ContractedUnitPrice)."""

KRATEO_TYPES: dict[str, str] = {"consumedquantity": STRING, "contractedunitcost": DOUBLE}
"""Where Krateo's table differs from the FOCUS type, Krateo wins: existing tables already have these
columns, and a notebook reading `consumedquantity` as text would break on a DOUBLE."""


def stored_type(column: focus_columns.FocusColumn) -> str:
    """The cost-table type of a FOCUS column (Krateo's overrides aside).

    JSON columns other than Tags are STRING: an OBJECT column takes a flat JSON object of strings,
    and anything else is reshaped on the way in (text that is not an object is split into
    `key:value` pairs or becomes `{}`). SkuPriceDetails is `key=value` text from Krateo's
    FocusConfig and free text in some exports; ContractApplied and AllocatedMethodDetails hold
    arrays. As STRING the value is kept exactly and SQL JSON functions can still read it; Tags stays
    OBJECT because showback filters on `tags['team']`.
    """
    if column.data_type == "Decimal":
        return DOUBLE
    if column.data_type == "Date/Time":
        return TIMESTAMP
    if column.data_type == "JSON" and column.name == "Tags":
        return OBJECT
    return STRING


COST_TYPES: dict[str, str] = {
    name.lower(): KRATEO_TYPES.get(name.lower()) or stored_type(focus_columns.BY_NAME[name]) for name in FOCUS_COLUMNS
}
"""Lower-cased FOCUS column -> CrateDB type of the cost table (from the catalogue)."""

COST_TIMESTAMPS = frozenset(n for n, t in COST_TYPES.items() if t == TIMESTAMP)
COST_DOUBLES = frozenset(n for n, t in COST_TYPES.items() if t == DOUBLE)
COST_OBJECTS = frozenset(n for n, t in COST_TYPES.items() if t == OBJECT)

BOOKKEEPING: dict[str, str] = {"finops_source": STRING, "finops_run": STRING, "finops_ingested_at": TIMESTAMP}
"""Columns we add to every table: which config wrote a row, in which scrape run, and when."""

STAGING_PART = "finops_part"
"""Extra staging column: the 0-based part number of a multi-part upload."""

UPSERT_KEYS: dict[str, tuple[str, ...]] = {
    "cost": ("resourceid", "resourcename", "billingperiodend", "billingperiodstart",
             "chargeperiodend", "chargeperiodstart", "skupriceid"),
    "resource": ("resourceid", "metricname", "timestamp"),
}
"""Krateo's ON CONFLICT keys (its handler's upsert): the legacy-mode replacement keys."""

_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")


def cost_columns() -> dict[str, str]:
    """Column -> CrateDB type of the cost (FOCUS) table, bookkeeping included."""
    return COST_TYPES | BOOKKEEPING


def resource_columns() -> dict[str, str]:
    base = {"resourceid": STRING, "metricname": STRING, "timestamp": TIMESTAMP, "average": DOUBLE, "unit": STRING}
    return base | BOOKKEEPING


def generic_columns(labels: Sequence[str] = ()) -> dict[str, str]:
    """One STRING per label, then `value DOUBLE`, `timestamp TIMESTAMP` and bookkeeping."""
    out = {valid_column_name(label): STRING for label in labels}
    out.update({"value": DOUBLE, "timestamp": TIMESTAMP})
    return out | BOOKKEEPING


def columns_for(metric_type: MetricType, labels: Sequence[str] = ()) -> dict[str, str]:
    """The column type map the upload stage converts values by (DOUBLE/TIMESTAMP/OBJECT/STRING)."""
    if metric_type == "cost":
        return cost_columns()
    if metric_type == "resource":
        return resource_columns()
    return generic_columns(labels)


def create_table(table: str, columns: dict[str, str], *, checked: bool = False) -> str:
    """`CREATE TABLE IF NOT EXISTS` in CrateDB's dialect, dynamic so unknown labels become columns.

    `checked`: the name was derived from an already validated one (staging tables may exceed the
    user-facing 63-character rule; CrateDB allows 255 bytes).
    """
    body = ",\n  ".join(f"{quote_ident(name)} {typ}" for name, typ in columns.items())
    name = table if checked else valid_table_name(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(name)} (\n  {body}\n)"
        " WITH (column_policy = 'dynamic')"
    )


def table_ddl(table: str, metric_type: MetricType, labels: Sequence[str] = ()) -> str:
    return create_table(table, columns_for(metric_type, labels))


def staging_table(table: str) -> str:
    """Where parts of a run wait for the final part: `<table>__finops_staging`.

    A suffix ending in `_staging` can never equal Krateo's `<cost>_res` resource tables, and
    CrateDB forbids a leading underscore, so a prefix could not hide it either.
    """
    return f"{valid_table_name(table)}__finops_staging"


def staging_ddl(table: str, metric_type: MetricType, labels: Sequence[str] = ()) -> str:
    columns = columns_for(metric_type, labels) | {STAGING_PART: "INTEGER"}
    return create_table(staging_table(table), columns, checked=True)


def valid_table_name(name: str) -> str:
    """The lower-cased table name, or InvalidInput (400) naming the rule."""
    if not isinstance(name, str) or not _TABLE.fullmatch(name):
        raise InvalidInput(
            "invalid table name",
            [FieldError("table", "must match ^[A-Za-z][A-Za-z0-9_]{0,62}$ (letters, digits, underscore)")],
        )
    return name.lower()


def valid_column_name(name: str) -> str:
    """The lower-cased column name for a label key, or InvalidInput naming it."""
    if not isinstance(name, str) or not _COLUMN.fullmatch(name):
        raise InvalidInput(
            "invalid column name",
            [FieldError(str(name), "a label used as a column must match ^[A-Za-z][A-Za-z0-9_]*$")],
        )
    return name.lower()
