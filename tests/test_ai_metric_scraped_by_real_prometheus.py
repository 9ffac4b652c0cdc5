"""A real Prometheus (Debian's package) scrapes the AI cost metrics; PromQL answers the database totals.

Cases:
- `promtool check config` accepts the scrape configuration we document (one static target: the
  aicost-metrics Service URL, metrics_path /metrics, the caller token as `authorization.credentials_file`);
- the metrics are not served without the token (401), and a Prometheus job without it reports the
  target down;
- Prometheus started on 127.0.0.1 scrapes the aicost_metrics function (scrape_interval 1s) until the
  target is `up`; then `sum by (team) (ai_finops_cost_dollars_total)` equals SUM(x_cost_usd) per team
  in the database, `sum(ai_finops_events_ingested_total)` equals the events stored, and the budget
  burn gauge is present;
- events re-sent (redelivery) change nothing in what Prometheus reads.

Skipped, saying why, when the `prometheus` binary is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aicost_metrics_server import Metrics, start_metrics
from aicost_server import AICost, start_aicost
from dbhandler_server import AUTH, TOKEN, stop_process

from functions.demo.aicost_producer import Generator, encode_batch
from functions.local.supervisor import free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="the `prometheus` binary is not installed "
                                "(apt-get install prometheus; CI's .ci/run installs it)")

BUDGET = {"apiVersion": "finops.krateo.io/v1", "kind": "AICostBudget",
          "metadata": {"name": "research-monthly", "namespace": "finops"},
          "spec": {"team": "research", "amount": "1000000", "period": "month", "thresholds": [0.9]}}


def scrape_config(target: str, interval: str = "1s", token_file: str = "/etc/prometheus/finops-token") -> str:
    """The documented scrape job: ONE target, the Service (every instance answers the same global totals),
    with the caller token read from a file (a Secret mounted into Prometheus)."""
    auth = f"    authorization:\n      credentials_file: {token_file}\n" if token_file else ""
    return (f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: finops-aicost\n    metrics_path: /metrics\n{auth}"
            f"    static_configs:\n      - targets: ['{target}']\n")


@pytest.fixture(name="stack")
def stack_fixture(tmp_path: Path) -> Iterator[tuple[AICost, Metrics]]:
    aicost = start_aicost(tmp_path, crs=[BUDGET])
    try:
        metrics = start_metrics(aicost)
        try:
            yield aicost, metrics
        finally:
            metrics.stop()
    finally:
        aicost.stop()


@pytest.fixture(name="prometheus")
def prometheus_fixture(tmp_path: Path, stack: tuple[AICost, Metrics]) -> Iterator[str]:
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    token = tmp_path / "prometheus-token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    config.write_text(scrape_config(stack[1].url.removeprefix("http://"), token_file=str(token)), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _wait_up(prom: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()
            active = last["data"]["activeTargets"]
            if active and all(t["health"] == "up" for t in active):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the target never became healthy in {timeout}s: {last}")


def _query(prom: str, promql: str) -> dict[str, float]:
    resp = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=10)
    body = resp.json()
    assert body["status"] == "success", body
    return {",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}


def _until(prom: str, promql: str, expected: dict[str, float], timeout: float = 30.0) -> dict[str, float]:
    """The query's answer once it equals `expected` (to 1e-6 relative), or the last one after timeout."""
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = _query(prom, promql)
        if got.keys() == expected.keys() and all(got[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items()):
            break
        time.sleep(0.5)
    return got


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (it comes with Debian's prometheus)")
def test_promtool_accepts_the_documented_scrape_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    config = tmp_path / "prometheus.yml"
    token = tmp_path / "finops-token"
    token.write_text("secret\n", encoding="utf-8")
    config.write_text(scrape_config("aicost-metrics.finops.svc.cluster.local:80", "30s", str(token)), encoding="utf-8")
    done = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sum_by_team_equals_the_database_totals(stack: tuple[AICost, Metrics], prometheus: str) -> None:
    aicost, _metrics = stack
    items = Generator(seed=7).batch(1500, datetime.now(UTC))
    body = encode_batch(items)
    headers = {"Content-Type": "application/cloudevents-batch+json", **AUTH}
    resp = httpx.post(aicost.url, content=body, headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1500

    _wait_up(prometheus)
    rows = aicost.db.sql("SELECT x_team, SUM(x_cost_usd) AS usd, COUNT(*) AS n FROM ai_costs GROUP BY x_team")
    expected = {f"team={r[0]}": float(r[1]) for r in rows}
    assert len(expected) >= 3
    got = _until(prometheus, "sum by (team) (ai_finops_cost_dollars_total)", expected)
    assert got.keys() == expected.keys()
    for team, usd in expected.items():
        assert got[team] == pytest.approx(usd, rel=1e-9), team
    assert _until(prometheus, "sum(ai_finops_events_ingested_total)", {"": 1500.0}) == {"": 1500.0}
    burn = _query(prometheus, 'ai_finops_budget_burn_ratio{budget="finops/research-monthly"}')
    assert len(burn) == 1 and next(iter(burn.values())) > 0

    again = httpx.post(aicost.url, content=body, headers=headers, timeout=60)  # redelivery of every event
    assert again.status_code == 200, again.text
    time.sleep(2.5)  # two more scrapes
    assert _query(prometheus, "sum by (team) (ai_finops_cost_dollars_total)") == pytest.approx(got)
    assert _query(prometheus, "sum(ai_finops_events_ingested_total)") == {"": 1500.0}


def test_metrics_need_the_token_and_a_job_without_it_is_down(tmp_path: Path, stack: tuple[AICost, Metrics]) -> None:
    _aicost, metrics = stack
    refused = httpx.get(metrics.url + "/metrics", timeout=30)
    assert refused.status_code == 401, refused.text
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "ai_finops" not in refused.text
    assert PROMETHEUS is not None
    config = tmp_path / "no-token.yml"
    config.write_text(scrape_config(metrics.url.removeprefix("http://"), token_file=""), encoding="utf-8")
    port = free_port()
    with (tmp_path / "prometheus-no-token.log").open("wb") as out:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb-no-token'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, target = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                active = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                # down with its error: Prometheus may show `down` before it has recorded the scrape's error
                target = active[0] if active and active[0]["health"] == "down" and active[0]["lastError"] else None
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                target = None
            if target is not None:
                break
            time.sleep(0.5)
        assert target is not None and target["health"] == "down", target
        assert "401" in target["lastError"], target
    finally:
        stop_process(proc)
