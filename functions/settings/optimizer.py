"""Settings of the optimizer function (admission webhook, GET /optimize, periodic day-2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from functions.settings import CrSource, DbHandlerClient, DbHandlerUrl, EventSink, EventSource


class OptimizerSettings(CrSource, DbHandlerClient, EventSink, EventSource):
    """Settings of the optimizer function (admission webhook, GET /optimize, periodic day-2).

    The database handler is only a fallback here: each composition names its own through its
    `<db-config>-endpoint` Secret, so FINOPS_DBHANDLER_URL defaults to empty (no fallback).
    """

    dbhandler_url: DbHandlerUrl = Field(default="", description="Database handler used when the composition's `<db-config>-endpoint` Secret has no server-url; empty = no fallback.")
    admission: bool = Field(default=True, alias="FINOPS_OPTIMIZER_ADMISSION", description="Answer AdmissionReviews (the webhook Deployment); false on the scale-to-zero Service, which serves only GET /optimize and the ping.")
    mode: Literal["legacy", "fixed"] = Field(default="fixed", alias="FINOPS_OPTIMIZER_MODE", description="Moving window: `legacy` reproduces Krateo's output exactly, `fixed` corrects its documented quirks.")
    budget_s: float = Field(default=3.0, alias="FINOPS_OPTIMIZER_BUDGET_S", gt=0, description="Seconds an admission may spend before it is answered allowed without a patch (keep it under the webhook's timeoutSeconds).")
    cache_ttl_s: float = Field(default=900.0, alias="FINOPS_OPTIMIZER_CACHE_TTL_S", ge=0, description="Seconds a computed window (per handler, table, resource, mode) is reused: Krateo recomputes on every UPDATE.")
    usage_notebook: str = Field(default="cyclic", alias="FINOPS_OPTIMIZER_USAGE_NOTEBOOK", description="Notebook of the database handler that returns a resource's usage series (Krateo's `cyclic`).")
    outbound_allow: str = Field(default="", alias="FINOPS_OUTBOUND_ALLOW", description="host[:port] patterns (comma separated, `*` wildcards) that the `dbhandler_url` of GET /optimize may name; the host:port of FINOPS_DBHANDLER_URL is always allowed (127.0.0.1:<port> on the local stack). Empty = `*.svc,*.svc.cluster.local` (the cluster's Services). Other URLs answer 403; link-local and cloud metadata addresses only when listed exactly.")
    carbon_db_url: str = Field(default="", alias="FINOPS_CARBON_DB_URL", description="SQL endpoint (CrateDB, or the handler's embedded /_sql) holding the carbon tables; empty = no carbon data (day-1 falls back to a safe default).")
    carbon_db_user: str = Field(default="", alias="FINOPS_CARBON_DB_USER", description="Database user for the carbon tables.")
    carbon_db_password: str = Field(default="", alias="FINOPS_CARBON_DB_PASSWORD", description="Database password for the carbon tables (from a Secret).")
    carbon_forecast_table: str = Field(default="carbon_forecast", alias="FINOPS_CARBON_FORECAST_TABLE", description="Forecast carbon intensity (region, timestamp, intensity), written by the forecasting pipeline.")
    carbon_history_table: str = Field(default="carbon_intensity", alias="FINOPS_CARBON_HISTORY_TABLE", description="Measured carbon intensity (region, timestamp, intensity); used (seasonal naive) when no fresh forecast exists.")
    opa_url: str = Field(default="", alias="FINOPS_OPA_URL", description="OPA server (Data API) that decides; empty = the embedded OPA engine on the policies below.")
    policy_dir: str = Field(default="", alias="FINOPS_POLICY_DIR", description="Folder of Rego policies and data.json for the embedded engine; empty = policies/ of the checkout, else /app/policies (the image).")
