"""Settings of the focus ingest function (FocusConfig CRs written as FOCUS rows)."""

from __future__ import annotations

from pydantic import Field

from functions.settings import DbHandlerClient


class FocusSettings(DbHandlerClient):
    """Settings of the focus ingest function."""

    db_url: str = Field(default="", alias="FINOPS_FOCUS_DB_URL", description="CrateDB HTTP URL the rows are written to; empty = the database handler's /_sql (embedded engine, FINOPS_DBHANDLER_URL).")

    @property
    def sql_url(self) -> str:
        return self.db_url or self.dbhandler_url
