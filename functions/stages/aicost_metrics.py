"""The AI cost metrics: a Prometheus exposition built fresh on every scrape from the DURABLE totals.

Why from the database and not from in-process counters: the aicost function scales to zero and out
to many instances; process counters would reset (and be summed twice across pods). Here every
scrape reads `SUM(x_cost_usd)` and `COUNT(*)` per (team, project, source) from the events table
(functions.storage.aicost_store.totals), so any instance answers the same global totals and
Prometheus scrapes the Service as ONE target (no `sum` across pods needed, nothing lost at zero).

Families (prometheus_client custom collector, rendered by `generate_latest` on a fresh registry):

| metric | type | labels | value |
|---|---|---|---|
| `ai_finops_cost_dollars_total` | counter | team, project, source | USD stored for AI cost events (all time) |
| `ai_finops_events_ingested_total` | counter | team, project, source | AI cost events stored (each event id once) |
| `ai_finops_budget_burn_ratio` | gauge | budget, period, team, project, source | spend / amount of the budget's CURRENT UTC period |
| `ai_finops_budget_amount_dollars` | gauge | budget, period, team, project, source | the budget's amount per period |

The same exposition carries the collection pipeline's accounting, read from the ledger every upload
writes (functions.storage.ledger), so a Prometheus alert sees rows kept out of any source:

| metric | type | labels | value |
|---|---|---|---|
| `finops_ingest_last_run_rows_received` | gauge | source, table | rows the source's latest committed run received |
| `finops_ingest_last_run_rows_stored` | gauge | source, table | rows of it stored |
| `finops_ingest_last_run_rows_rejected` | gauge | source, table | rows of it kept in `finops_rejects` (alert on `> 0`) |
| `finops_ingest_last_run_timestamp_seconds` | gauge | source, table | when that run committed |

Budget scope labels are "" when the budget applies to any value. A counter only decreases if a
credit (a negative cost) is stored: `rate()` then reads it as a reset, as Prometheus documents.
When the database is unreachable the scrape fails (503) rather than exposing zeros that would
look like a counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from pydantic import ValidationError

from functions.clients.db import Database
from functions.clients.kube import ResourceReader
from functions.logs import get_logger
from functions.models.aicost import AICostBudget, period_bounds
from functions.settings.aicost import AICostSettings
from functions.storage import aicost_store, ledger

__all__ = ["BURN_METRIC", "COST_METRIC", "EVENTS_METRIC", "handle"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

log = get_logger("aicost.metrics")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
COST_METRIC = "ai_finops_cost_dollars_total"
EVENTS_METRIC = "ai_finops_events_ingested_total"
BURN_METRIC = "ai_finops_budget_burn_ratio"
AMOUNT_METRIC = "ai_finops_budget_amount_dollars"
INGEST_METRICS = ("finops_ingest_last_run_rows_received", "finops_ingest_last_run_rows_stored",
                  "finops_ingest_last_run_rows_rejected", "finops_ingest_last_run_timestamp_seconds")
METRIC_NAMES: tuple[str, ...] = (COST_METRIC, EVENTS_METRIC, BURN_METRIC, AMOUNT_METRIC, *INGEST_METRICS)
"""Every metric name this exposition carries (the dashboard test checks its queries against them)."""
TOTAL_LABELS = ("team", "project", "source")
BUDGET_LABELS = ("budget", "period", "team", "project", "source")


class AICostCollector(Collector):
    """Reads the totals and budgets once per `collect()` (one scrape)."""

    def __init__(self, db: Database, reader: ResourceReader, settings: AICostSettings,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db, self.reader, self.settings, self.now = db, reader, settings, now

    def collect(self) -> Iterator[Metric]:
        exists = self.db.table_exists(self.settings.table)
        cost = CounterMetricFamily(COST_METRIC, "USD of AI/ML cost events stored, by team, project and source (durable, global).",
                                   labels=TOTAL_LABELS)
        count = CounterMetricFamily(EVENTS_METRIC, "AI cost events stored (each CloudEvent id once), by team, project and source.",
                                    labels=TOTAL_LABELS)
        for total in aicost_store.totals(self.db, self.settings.table) if exists else []:
            labels = [total.team, total.project, total.source]
            cost.add_metric(labels, total.usd)
            count.add_metric(labels, float(total.events))
        yield cost
        yield count
        yield from self._budgets(exists)

    def _budgets(self, table_exists: bool) -> Iterator[Metric]:
        burn = GaugeMetricFamily(BURN_METRIC, "Spend / amount of each AICostBudget in its current UTC period (1 = budget used up).",
                                 labels=BUDGET_LABELS)
        amount = GaugeMetricFamily(AMOUNT_METRIC, "Amount (USD) of each AICostBudget per period.", labels=BUDGET_LABELS)
        now = self.now()
        for budget in budgets(self.reader):
            spec = budget.spec
            start, end, _label = period_bounds(spec.period, now)
            spent = aicost_store.spend(self.db, self.settings.table, spec.scope(), start, end) if table_exists else Decimal(0)
            labels = [f"{budget.metadata.namespace}/{budget.metadata.name}", spec.period,
                      spec.team or "", spec.project or "", spec.source or ""]
            burn.add_metric(labels, float(spent / spec.amount) if spec.amount else 0.0)
            amount.add_metric(labels, float(spec.amount))
        yield burn
        yield amount


class IngestCollector(Collector):
    """The latest committed run of every collection source: rows received, stored and rejected."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        helps = ("Rows the latest committed run of a source received.", "Rows of that run stored in its table.",
                 "Rows of that run rejected (kept with their reason in finops_rejects; `finops rejects KIND/NS/NAME`).",
                 "Unix time the latest run of a source committed.")
        families = [GaugeMetricFamily(n, h, labels=("source", "table")) for n, h in zip(INGEST_METRICS, helps, strict=True)]
        for run in ledger.last_runs(self.db):
            labels = [run["source"], run["table"]]
            for family, value in zip(families, (run["rows_received"], run["rows_stored"], run["rows_rejected"],
                                                run["at"] / 1000), strict=True):
                family.add_metric(labels, float(value))
        yield from families


def budgets(reader: ResourceReader) -> list[AICostBudget]:
    """Every valid AICostBudget; a broken one is logged and left out (it must not fail the scrape)."""
    out = []
    for body in reader.list(AICostBudget.KIND):
        try:
            out.append(AICostBudget.model_validate(body))
        except ValidationError as exc:
            meta = body.get("metadata", {}) if isinstance(body, dict) else {}
            log.error("invalid AICostBudget left out of the metrics",
                      extra={"name": meta.get("name"), "namespace": meta.get("namespace"), "reason": str(exc)})
    return out


def handle(db: Database, reader: ResourceReader, settings: AICostSettings,
           now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[str, bytes]:
    """(content type, exposition body) of one scrape: a fresh registry holding one fresh collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AICostCollector(db, reader, settings, now))
    registry.register(IngestCollector(db))
    return CONTENT_TYPE, generate_latest(registry)
