"""Krateo-compatible collection CRs (`finops.krateo.io/v1`): the single source of truth.

CRD YAML in crds/ and the JSON Schemas in schemas/ are generated from these models (task crds).
Field names, defaults and case rules follow Krateo's finops-data-types and the CRDs of
finops-operator-exporter and finops-operator-scraper; credentials are always Secret references, never inline.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from functions.models.durations import parse_go_duration
from functions.models.k8s import CamelModel, Condition, ObjectMeta, ObjectRef, SecretKeySelector

GROUP = "finops.krateo.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

MetricType = Literal["cost", "resource", "generic"]


class API(CamelModel):
    """An HTTP call: the base URL and credentials come from the endpoint Secret (`endpointRef`)."""

    path: str = Field(default="", description="Path appended to the Secret's server-url; may carry a query string and <var> tokens.")
    verb: str = Field(default="GET", description="HTTP method; GET when empty.")
    headers: list[str] = Field(default_factory=list, description='Extra headers, each "Name: value".')
    payload: str = Field(default="", description="Request body, sent only when non-empty.")
    endpoint_ref: ObjectRef | None = Field(default=None, description="Secret with server-url and credentials (token, username/password, mTLS, AWS keys, proxy-url, insecure).")

    @field_validator("verb")
    @classmethod
    def _verb(cls, v: str) -> str:
        return (v or "GET").upper()


class Generic(CamelModel):
    metric_name: str = Field(description="Metric name of the exposed series (and the family the scraper keeps).")
    value_column_index: int = Field(ge=0, description="Zero-based index of the column that holds the sample value.")


def _metric_type(v: Any) -> Any:
    if isinstance(v, str):
        low = v.strip().lower() or "cost"
        if low not in ("cost", "resource", "generic"):
            raise ValueError(f"metricType must be cost, resource or generic (any case), got {v!r}")
        return low
    return v


def _duration(v: Any) -> Any:
    if isinstance(v, str):
        parse_go_duration(v)
    return v


class ExporterConfigSpec(CamelModel):
    provider: ObjectRef | None = Field(default=None, description="Legacy, unused (kept for compatibility).")
    api: API = Field(description="The external data source.")
    metric_type: MetricType = Field(default="cost", description="cost, resource or generic (case-insensitive).")
    generic: Generic | None = Field(default=None, description="Required when metricType is generic.")
    polling_interval: str = Field(description="Go duration between polls (e.g. 1h, 12h30m).", json_schema_extra={"format": "duration"})
    additional_variables: dict[str, str] = Field(default_factory=dict, description="Values for <var> tokens; ResourceId is the resource column for metricType resource.")

    _mt = field_validator("metric_type", mode="before")(_metric_type)
    _pi = field_validator("polling_interval", mode="before")(_duration)

    @model_validator(mode="after")
    def _generic_needed(self) -> ExporterConfigSpec:
        if self.metric_type == "generic" and self.generic is None:
            raise ValueError("generic {metricName, valueColumnIndex} is required when metricType is generic")
        return self


class ScraperConfigSpec(CamelModel):
    table_name: str = Field(description="Destination table.", min_length=1)
    polling_interval: str = Field(description="Go duration between scrapes (an ExporterScraperConfig with an exporterConfig scrapes on export.completed instead).", json_schema_extra={"format": "duration"})
    api: API | None = Field(default=None, description="Endpoint to scrape; an ExporterScraperConfig with an exporterConfig reads our exporter unless it has an endpointRef.")
    metric_type: MetricType = Field(default="cost", description="cost, resource or generic; ignored inside an ExporterScraperConfig (exporterConfig.metricType wins).")
    generic: Generic | None = Field(default=None, description="Generic-metric selection (metricName, valueColumnIndex).")
    scraper_database_config_ref: ObjectRef = Field(description="DatabaseConfig holding the database user and password Secret.")

    _mt = field_validator("metric_type", mode="before")(_metric_type)
    _pi = field_validator("polling_interval", mode="before")(_duration)


class ConditionedStatus(CamelModel):
    model_config = CamelModel.model_config | {"extra": "allow"}
    conditions: list[Condition] = Field(default_factory=list, description="Ready and Synced conditions.")


class _Resource(CamelModel):
    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    api_version: str = Field(default=API_VERSION, description="finops.krateo.io/v1")
    kind: str = Field(description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")

    @property
    def ref(self) -> str:
        return f"{self.KIND}/{self.metadata.namespace}/{self.metadata.name}"


class ExporterScraperConfigSpec(CamelModel):
    """Either half or both (each optional, as in krateo's finops-operator-exporter CRD), at least one.

    Exporter only: exported on exporterConfig.pollingInterval and served on GET /metrics/<namespace>/<name>
    for any Prometheus; nothing is stored. Scraper only: scraperConfig.api is scraped on
    scraperConfig.pollingInterval, like a ScraperConfig. A spec with neither would do nothing: refused.
    """

    model_config = CamelModel.model_config | {"json_schema_extra": {"minProperties": 1}}
    exporter_config: ExporterConfigSpec | None = Field(
        default=None, description="What to poll and how to convert it; without it scraperConfig.api is scraped on scraperConfig.pollingInterval.")
    scraper_config: ScraperConfigSpec | None = Field(
        default=None, description="Where to store it; without it the snapshot is only served on GET /metrics/<namespace>/<name>.")

    @model_validator(mode="after")
    def _a_half_at_least(self) -> ExporterScraperConfigSpec:
        if self.exporter_config is None and self.scraper_config is None:
            raise ValueError("exporterConfig or scraperConfig is required (either or both); neither is set")
        return self


class ExporterScraperConfig(_Resource):
    KIND: ClassVar[str] = "ExporterScraperConfig"
    PLURAL: ClassVar[str] = "exporterscraperconfigs"
    kind: Literal["ExporterScraperConfig"] = Field(default="ExporterScraperConfig", description="Kind.")
    spec: ExporterScraperConfigSpec = Field(description="Exporter and/or scraper settings (at least one of them).")
    status: ConditionedStatus | None = Field(default=None, description="Observed state.")


class ScraperConfig(_Resource):
    KIND: ClassVar[str] = "ScraperConfig"
    PLURAL: ClassVar[str] = "scraperconfigs"
    kind: Literal["ScraperConfig"] = Field(default="ScraperConfig", description="Kind.")
    spec: ScraperConfigSpec = Field(description="Scraper settings (fields directly under spec).")
    status: ConditionedStatus | None = Field(default=None, description="Observed state.")


class DatabaseConfigSpec(CamelModel):
    username: str = Field(description="Database (CrateDB) user.", min_length=1)
    password_secret_ref: SecretKeySelector = Field(description="Secret key holding the user's password.")


class DatabaseConfig(_Resource):
    KIND: ClassVar[str] = "DatabaseConfig"
    PLURAL: ClassVar[str] = "databaseconfigs"
    kind: Literal["DatabaseConfig"] = Field(default="DatabaseConfig", description="Kind.")
    spec: DatabaseConfigSpec = Field(description="Database credentials reference.")


COLLECTION_KINDS: dict[str, type[_Resource]] = {
    m.KIND: m for m in (ExporterScraperConfig, ScraperConfig, DatabaseConfig)
}
