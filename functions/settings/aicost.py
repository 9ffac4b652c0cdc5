"""Settings of the aicost function and of the metrics that read its tables."""

from __future__ import annotations

from pydantic import Field

from functions.settings import CrSource, DbHandlerClient, EventSink, EventSource


class AICostSettings(CrSource, DbHandlerClient, EventSink, EventSource):
    """Settings of the aicost function (and of the metrics that read its tables)."""

    table: str = Field(default="ai_costs", alias="FINOPS_AICOST_TABLE", description="Table of AI cost events (FOCUS-shaped, one row per event id).")
    alerts_table: str = Field(default="ai_budget_alerts", alias="FINOPS_AICOST_ALERTS_TABLE", description="Table of fired budget alerts (one row per budget, threshold and period).")
    db_url: str = Field(default="", alias="FINOPS_AICOST_DB_URL", description="CrateDB HTTP URL for AI costs; empty = the database handler's /_sql (FINOPS_DBHANDLER_URL).")
    database_config: str = Field(default="finops/finops-db", alias="FINOPS_AICOST_DATABASE_CONFIG", description="DatabaseConfig <namespace>/<name> holding the database user and password Secret.")
    max_batch: int = Field(default=20_000, ge=1, alias="FINOPS_AICOST_MAX_BATCH", description="Most events accepted in one batched request.")

    def sql_url(self) -> str:
        return self.db_url or self.dbhandler_url
