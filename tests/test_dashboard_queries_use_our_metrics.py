"""The Grafana dashboard's queries read only metrics that exist: ours (in our exposition) or OpenCost's.

Cases:
- dashboards/ai-costs.json is what functions/tooling/dashboards.py generates (`--check` passes);
- every PromQL expression of every panel target and query variable is collected; each metric
  name in them is either in the exposition aicost_metrics really serves (a real embedded database
  holding AI cost events and a budget CR) or listed in EXTERNAL_METRICS (OpenCost's), and the
  external list holds only names the dashboard uses;
- every expression (Grafana variables substituted) parses: `promtool check rules` on the
  expressions as recording rules (skipped when promtool is absent);
- the dashboard shows AI cost by team, project and source, budget burn and OpenCost's node cost.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aicost_server import write_crs
from embedded_sql_server import serve
from prometheus_client.parser import text_string_to_metric_families

from functions.clients.db import Database
from functions.clients.kube import LocalReader
from functions.codecs import ai_pricing
from functions.models.aicost import AICostEvent
from functions.settings.aicost import AICostSettings
from functions.stages import aicost_metrics
from functions.stages.aicost_ingest import focus_row
from functions.storage import aicost_store
from functions.storage.engine import Engine
from functions.tooling import dashboards

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "ai-costs.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
            "bool", "inf", "nan", "atan2"}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "${datasource}": "x"}


def expressions(dash: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets (rows nest panels) and query variables."""
    out: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets") or [] if t.get("expr"))
            walk(p.get("panels") or [])
    walk(dash.get("panels") or [])
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            out.append(match.group(1) if match else query)
    return out


def substituted(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\w+", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', substituted(expr))
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or m.group(0) in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


@pytest.fixture(name="dashboard", scope="module")
def dashboard_fixture() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


@pytest.fixture(name="exposed", scope="module")
def exposed_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Names of the families aicost_metrics serves over a real database with events and a budget."""
    state = tmp_path_factory.mktemp("state")
    write_crs(state, [{"apiVersion": "finops.krateo.io/v1", "kind": "AICostBudget",
                       "metadata": {"name": "b", "namespace": "finops"}, "spec": {"amount": "100", "period": "day"}}])
    settings = AICostSettings.model_validate({})
    engine = Engine()
    with serve(engine) as url:
        db = Database(url)
        aicost_store.ensure_tables(db, settings.table, settings.alerts_table)
        event = AICostEvent.model_validate({"id": "e1", "time": datetime.now(UTC), "data": {
            "team": "t", "project": "p", "source": "gpu-job", "gpu": {"gpu_type": "H100", "hours": "1"}}})
        priced = ai_pricing.price(event, ai_pricing.price_table([]))
        aicost_store.insert_events(db, settings.table, [focus_row(event, priced, datetime.now(UTC))])
        _ctype, body = aicost_metrics.handle(db, LocalReader(state), settings)
        db.close()
    engine.close()
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        names.update(s.name for s in family.samples)
    yield names


def test_dashboard_json_is_generated_by_the_sdk_script() -> None:
    assert dashboards.main(["--check", str(DASHBOARD.parent)]) == 0, "run: python -m functions.tooling.dashboards dashboards"


def test_every_metric_is_ours_and_exposed_or_a_listed_opencost_one(dashboard: dict[str, Any], exposed: set[str]) -> None:
    assert {"ai_finops_cost_dollars_total", "ai_finops_events_ingested_total", "ai_finops_budget_burn_ratio"} <= exposed
    used: set[str] = set()
    for expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        for name in names:
            assert name in exposed or name in dashboards.EXTERNAL_METRICS, f"{name} (in {expr!r}) is neither exposed nor external"
            if name.startswith("ai_finops_"):
                assert name in exposed, name
        used |= names
    assert set(dashboards.EXTERNAL_METRICS) <= used, "EXTERNAL_METRICS lists names the dashboard does not use"


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (team) (rate(ai_finops_cost_dollars_total{team=~"$team"}[$__rate_interval])) * 3600', {"ai_finops_cost_dollars_total"}),
    ("sum by (namespace) (a * on (instance) group_left () node_cpu_hourly_cost)", {"a", "node_cpu_hourly_cost"}),
    ("max by (budget) (ai_finops_budget_burn_ratio) > bool 1", {"ai_finops_budget_burn_ratio"}),
], ids=["rate-with-variables", "vector-matching", "comparison"])
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian's prometheus package)")
def test_every_expression_parses_with_promtool(dashboard: dict[str, Any], tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:expr_{i}", "expr": substituted(e)} for i, e in enumerate(expressions(dashboard))]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([str(shutil.which("promtool")), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_shows_ai_cost_by_team_project_source_budgets_and_opencost(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expressions(dashboard))
    for needle in ("sum by (team)", "sum by (source)", "sum by (team, project)", "sum by (team, project, source)",
                   "ai_finops_budget_burn_ratio", "node_total_hourly_cost", "container_cpu_allocation"):
        assert needle in exprs, needle
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "team", "project", "source"}
