"""Grafana dashboards as code (grafana-foundation-sdk): dashboards/ai-costs.json is generated here.

    python -m functions.tooling.dashboards dashboards            # write dashboards/*.json
    python -m functions.tooling.dashboards --check dashboards    # exit 1 naming every file that would change

Why generated: the queries use the metric names of functions.stages.aicost_metrics (the constants,
not copies), a test parses every PromQL expression of the JSON and checks that each metric name is
one we expose or one of OpenCost's (EXTERNAL_METRICS), and the JSON stays reviewable in git.

ai-costs: AI cost rate and totals by team/project/source (our `ai_finops_*` metrics, filtered by
`$team`, `$project`, `$source`), budget burn, and beside them OpenCost's cluster cost metrics
(node_total_hourly_cost, node_cpu/ram/gpu_hourly_cost, container_*_allocation), all in USD/hour.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import gauge, stat, table, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from functions.models import crdgen
from functions.stages.aicost_metrics import BURN_METRIC, COST_METRIC, EVENTS_METRIC

EXTERNAL_METRICS: dict[str, str] = {
    "node_total_hourly_cost": "OpenCost: total node cost per hour",
    "node_cpu_hourly_cost": "OpenCost: cost per vCPU-hour on the node",
    "node_ram_hourly_cost": "OpenCost: cost per GiB-hour of memory on the node",
    "node_gpu_hourly_cost": "OpenCost: cost per GPU-hour on the node",
    "container_cpu_allocation": "OpenCost: CPUs allocated to a container",
    "container_memory_allocation_bytes": "OpenCost: memory allocated to a container",
    "container_gpu_allocation": "OpenCost: GPUs allocated to a container",
    "pv_hourly_cost": "OpenCost: cost per GiB-hour of a persistent volume",
}
"""Metrics of other exporters the dashboards read (OpenCost's, https://opencost.io/docs/integrations/metrics)."""

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = '{team=~"$team", project=~"$project", source=~"$source"}'
USD_H = "currencyUSD"
GIB = 1024**3


def _q(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(PromQueryFormat.TABLE)
    return q


def _series(title: str, desc: str, unit: str, queries: list[Dataquery], *, stacked: bool = False,
            w: int = 12) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(desc).datasource(DS).unit(unit).height(8).span(w)
             .fill_opacity(20 if stacked else 5)
             .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull", "max"])))
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def _stat(title: str, desc: str, unit: str, expr: str, w: int = 6) -> stat.Panel:
    return (stat.Panel().title(title).description(desc).datasource(DS).unit(unit).height(4).span(w)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])).with_target(_q(expr)))


def _burn_thresholds() -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
        dm.Threshold(value=None, color="green"), dm.Threshold(value=0.8, color="orange"),
        dm.Threshold(value=1.0, color="red")])


def _label_var(name: str, label: str) -> db.QueryVariable:
    return (db.QueryVariable(name).label(label).datasource(DS)
            .query(f"label_values({COST_METRIC}, {name})")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True)
            .all_value(".*").current(dm.VariableOption(selected=True, text="All", value="$__all")))


def _ai_rows() -> list[Any]:
    rate = f"rate({COST_METRIC}{SEL}[$__rate_interval])"
    return [
        db.Row("AI spend (ai_finops_* metrics, durable totals from the database)"),
        _stat("AI spend in range", "USD of AI cost events in the selected time range.", USD_H,
              f"sum(increase({COST_METRIC}{SEL}[$__range]))"),
        _stat("AI spend, all time", "Durable total of every stored AI cost event (USD).", USD_H, f"sum({COST_METRIC}{SEL})"),
        _stat("AI cost rate (USD/hour)", "Current AI spend rate.", USD_H, f"sum({rate}) * 3600"),
        _stat("Events ingested/s", "AI cost events stored per second (each event id once).", "ops",
              f"sum(rate({EVENTS_METRIC}{SEL}[$__rate_interval]))"),
        _series("AI cost rate by team (USD/hour)", "sum by team of the counter's rate.", USD_H,
                [_q(f"sum by (team) ({rate}) * 3600", "{{team}}")], stacked=True),
        _series("AI cost rate by source (USD/hour)", "gpu-job, llm-api, inference, ...", USD_H,
                [_q(f"sum by (source) ({rate}) * 3600", "{{source}}")], stacked=True),
        _series("AI cost rate by project (USD/hour)", "Per team and project.", USD_H,
                [_q(f"sum by (team, project) ({rate}) * 3600", "{{team}}/{{project}}")], stacked=True),
        (table.Panel().title("AI spend totals by team, project and source").datasource(DS).unit(USD_H).height(8).span(12)
         .description("All-time USD per (team, project, source), from the durable totals.")
         .with_target(_q(f"sum by (team, project, source) ({COST_METRIC}{SEL})", instant=True))),
    ]


def _budget_rows() -> list[Any]:
    return [
        db.Row("Budgets (AICostBudget)"),
        (gauge.Panel().title("Budget burn, current period").description(
            "Spend / amount of each AICostBudget in its current UTC day, week or month (1 = 100%).")
         .datasource(DS).unit("percentunit").min(0).max(1.2).height(8).span(8).thresholds(_burn_thresholds())
         .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
         .with_target(_q(f"max by (budget) ({BURN_METRIC})", "{{budget}}"))),
        _series("Budget burn over time", "Resets to 0 when a budget period starts.", "percentunit",
                [_q(f"max by (budget, period) ({BURN_METRIC})", "{{budget}} ({{period}})")], w=16),
    ]


def _cluster_rows() -> list[Any]:
    cpu = "sum by (namespace) (container_cpu_allocation * on (instance) group_left () node_cpu_hourly_cost)"
    ram = (f"sum by (namespace) (container_memory_allocation_bytes / {GIB} "
           "* on (instance) group_left () node_ram_hourly_cost)")
    gpu = "sum by (namespace) (container_gpu_allocation * on (instance) group_left () node_gpu_hourly_cost)"
    ai = f"sum(rate({COST_METRIC}[$__rate_interval])) * 3600"
    return [
        db.Row("Cluster cost (OpenCost) beside AI spend"),
        _stat("Cluster cost (USD/hour)", "OpenCost: sum of node_total_hourly_cost.", USD_H, "sum(node_total_hourly_cost)"),
        _stat("Cluster cost, 30 days at this rate", "OpenCost: node_total_hourly_cost x 730 hours.", USD_H,
              "sum(node_total_hourly_cost) * 730"),
        _stat("GPU nodes (USD/hour)", "OpenCost: node_gpu_hourly_cost of every node.", USD_H, "sum(node_gpu_hourly_cost)"),
        _stat("Persistent volumes (USD/hour)", "OpenCost: pv_hourly_cost per GiB.", USD_H, "sum(pv_hourly_cost)"),
        _series("Cluster vs AI events (USD/hour)", "OpenCost's node cost next to the AI cost events' rate.", USD_H,
                [_q("sum(node_total_hourly_cost)", "cluster nodes (OpenCost)", "A"), _q(ai, "AI cost events", "B")]),
        _series("Namespace allocation cost (USD/hour)", "OpenCost: CPU, memory and GPU allocation x node prices.", USD_H,
                [_q(cpu, "{{namespace}} cpu", "A"), _q(ram, "{{namespace}} ram", "B"), _q(gpu, "{{namespace}} gpu", "C")],
                stacked=True),
    ]


def ai_costs() -> db.Dashboard:
    """The AI costs dashboard (uid finops-ai-costs)."""
    dash = (db.Dashboard("FinOps: AI/ML costs").uid("finops-ai-costs").tags(["finops", "ai", "generated"])
            .description("AI/ML cost events (GPU jobs, LLM APIs) by team, project and source, budgets, and "
                         "OpenCost's cluster cost. Generated by functions/tooling/dashboards.py: do not edit by hand.")
            .refresh("30s").time("now-6h", "now").timezone("utc").editable()
            .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
            .with_variable(_label_var("team", "Team")).with_variable(_label_var("project", "Project"))
            .with_variable(_label_var("source", "Source")))
    for item in [*_ai_rows(), *_budget_rows(), *_cluster_rows()]:
        dash = dash.with_row(item) if isinstance(item, db.Row) else dash.with_panel(item)
    return dash


DASHBOARDS = {"ai-costs.json": ai_costs}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable: sorted keys, 2-space indent)."""
    return {name: json.dumps(build().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.tooling.dashboards", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("dashboards"), help="output folder (default dashboards)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file would change")
    args = parser.parse_args(argv)
    files = {args.out / n: text for n, text in render().items()}
    return crdgen.sync(files, args.check, f"python -m functions.tooling.dashboards {args.out}")


if __name__ == "__main__":
    sys.exit(main())
