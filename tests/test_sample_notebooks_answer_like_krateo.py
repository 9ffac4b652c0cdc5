"""The sample Notebook CRs (crds/examples/notebook-*.yaml) validate, compile and answer right on real rows.

Cases:
- every sample is a valid Notebook CR whose inline code compiles;
- cost-breakdown: BilledCost and EffectiveCost per tag, service and period, never summed across
  currencies; empty and missing tags are `(untagged)`; totals equal the stored sums; a tag key no
  row carries makes everything untagged; from/to filter billing periods; no table -> 422;
- cyclic: Krateo's output shape, UTC `...Z` timestamps oldest first; an exact resource id does not
  mix .../vm1 with .../vm10; a substring still finds series (Krateo's LIKE) as the fallback;
  missing arguments -> 422;
- tritoninput: a regular grid at the smallest step, gaps filled with 0.0, the last N points as a
  batch of one; no rows -> 422 (the runner exits cleanly instead of panicking);
- tritonoutput stores one row per prediction (counter = horizon index), twice the same job stores
  nothing twice; sklearninput refuses its text column and reads a numeric table as floats (NULL = 0.0).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import DbHandler, start_dbhandler

from functions.models.notebooks import Notebook

EXAMPLES = Path(__file__).resolve().parents[1] / "crds" / "examples"
SAMPLES = sorted(EXAMPLES.glob("notebook-*.yaml"))
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


def cost(resource: str, currency: str, billed: float, effective: float, service: str, period: str, tags: str) -> dict[str, Any]:
    labels = {"ResourceId": resource, "ResourceName": resource, "BilledCost": str(billed), "EffectiveCost": str(effective),
              "BillingCurrency": currency, "ServiceName": service, "ProviderName": "P", "ChargeCategory": "Usage",
              "BillingPeriodStart": f"{period}-01T00:00:00Z", "BillingPeriodEnd": f"{period}-28T00:00:00Z",
              "ChargePeriodStart": f"{period}-01T00:00:00Z", "ChargePeriodEnd": f"{period}-02T00:00:00Z",
              "SkuPriceId": "sku", "Tags": tags}
    return {"labels": labels, "value": billed, "timestamp": 1700000000}


COSTS = [
    cost("r1", "USD", 10.0, 8.0, "Compute", "2024-01", "team: a;env: prod"),
    cost("r2", "USD", 5.5, 5.0, "Storage", "2024-01", "team: b"),
    cost("r3", "USD", 2.25, 2.0, "Compute", "2024-02", "env: dev"),
    cost("r4", "EUR", 7.0, 6.5, "Compute", "2024-02", "team: a"),
    cost("r5", "EUR", 1.0, 1.0, "Compute", "2024-02", ""),
]


def usage(resource: str, minute: int, value: float | None) -> dict[str, Any]:
    labels = {"ResourceId": resource, "metricName": "Percentage CPU", "timestamp": f"2024-03-01T10:{minute:02d}:00Z",
              "average": "" if value is None else str(value), "unit": "Percent"}
    return {"labels": labels, "value": value or 0, "timestamp": 1700000000}


USAGE = [usage(VM, 0, 10.0), usage(VM, 15, 20.0), usage(VM, 45, 40.0), usage(VM + "0", 0, 99.0)]


@pytest.fixture(scope="module", name="server")
def server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    handler = start_dbhandler(tmp_path_factory.mktemp("samples"))
    try:
        for doc_path in SAMPLES:
            doc = yaml.safe_load(doc_path.read_text())
            url = f"{handler.url}/compute/{doc['metadata']['name']}/upload?overwrite=true"
            assert httpx.post(url, content=doc["spec"]["inline"].encode(), headers=handler.auth()).json() == {"result": True}
        assert handler.upload(COSTS, {"table": "costs", "type": "cost"}).status_code == 200
        assert handler.upload(USAGE, {"table": "usage", "type": "resource"}).status_code == 200
        yield handler
    finally:
        handler.stop()


def run(server: DbHandler, name: str, **params: str) -> httpx.Response:
    headers = {**server.auth(), "Accept": "application/json"}
    return httpx.post(f"{server.url}/compute/{name}", json=params, headers=headers, timeout=60)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_is_a_valid_notebook_that_compiles(path: Path) -> None:
    nb = Notebook.model_validate(yaml.safe_load(path.read_text()))
    assert nb.spec.type == "inline" and nb.spec.inline
    compile(nb.spec.inline, path.name, "exec")


def test_cost_breakdown_by_tag_service_and_period(server: DbHandler) -> None:
    answer = run(server, "cost-breakdown", table="costs", by="tag:team,service,period")
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["by"] == ["tag:team", "service", "period"]
    rows = {(r["tag:team"], r["service"], r["period"], r["currency"]): (r["billedcost"], r["effectivecost"], r["rows"])
            for r in got["rows"]}
    assert rows == {
        ("a", "Compute", "2024-01", "USD"): (10.0, 8.0, 1), ("b", "Storage", "2024-01", "USD"): (5.5, 5.0, 1),
        ("(untagged)", "Compute", "2024-02", "USD"): (2.25, 2.0, 1), ("a", "Compute", "2024-02", "EUR"): (7.0, 6.5, 1),
        ("(untagged)", "Compute", "2024-02", "EUR"): (1.0, 1.0, 1),
    }
    stored = {c: (b, e, n) for c, b, e, n in server.sql(
        "SELECT billingcurrency, SUM(billedcost), SUM(effectivecost), COUNT(*) FROM costs GROUP BY billingcurrency")}
    assert {t["currency"]: (t["billedcost"], t["effectivecost"], t["rows"]) for t in got["totals"]} == stored


def test_cost_breakdown_unknown_tag_and_period_filter(server: DbHandler) -> None:
    got = run(server, "cost-breakdown", table="costs", by="tag:nobody-has-this", **{"from": "2024-02"}).json()
    assert {(r["tag:nobody-has-this"], r["currency"], r["rows"]) for r in got["rows"]} == {
        ("(untagged)", "USD", 1), ("(untagged)", "EUR", 2)}
    default = run(server, "cost-breakdown", table="costs", to="2024-02-01").json()
    assert default["by"] == ["service"] and {r["service"] for r in default["rows"]} == {"Compute", "Storage"}


@pytest.mark.parametrize("params", [{}, {"table": "costs", "by": "colour"}, {"table": "x;drop"}], ids=["no-table", "bad-by", "bad-table"])
def test_cost_breakdown_bad_parameters_fail_clearly(server: DbHandler, params: dict[str, str]) -> None:
    answer = run(server, "cost-breakdown", **params)
    assert answer.status_code == 422 and answer.json()["stderr"]


def test_cyclic_matches_the_exact_resource_in_krateo_shape(server: DbHandler) -> None:
    got = run(server, "cyclic", table_name="usage", resource_name=VM).json()
    assert got == [{"resourceid": VM, "metricname": "Percentage CPU", "unit": "Percent", "timeseries": [
        {"average": 10.0, "timestamp": "2024-03-01T10:00:00Z"}, {"average": 20.0, "timestamp": "2024-03-01T10:15:00Z"},
        {"average": 40.0, "timestamp": "2024-03-01T10:45:00Z"}]}]


def test_cyclic_falls_back_to_substring_and_requires_arguments(server: DbHandler) -> None:
    got = run(server, "cyclic", table_name="usage", resource_name="virtualMachines/vm").json()
    assert [s["resourceid"] for s in got] == [VM, VM + "0"]
    missing = run(server, "cyclic", table_name="usage")
    assert missing.status_code == 422 and "missing argument for call: resource_name" in missing.json()["stderr"]


def test_tritoninput_builds_a_regular_grid(server: DbHandler) -> None:
    params = {"input_table_name": "usage", "input_table_column_name": "average", "key_name": "resourceid", "key_value": VM}
    assert run(server, "tritoninput", input_data_length="512", **params).json() == {"result": [[10.0, 20.0, 0.0, 40.0]]}
    assert run(server, "tritoninput", input_data_length="2", **params).json() == {"result": [[0.0, 40.0]]}
    none = run(server, "tritoninput", input_data_length="2", **{**params, "key_value": "nope"})
    assert none.status_code == 422 and "no rows" in none.json()["stderr"]


def test_tritonoutput_stores_predictions_once_and_sklearninput_reads_them(server: DbHandler) -> None:
    params = {"output_table_name": "forecast", "job_uid": "job-1", "pod_uid": "pod-1", "predictions": json.dumps([1.5, 2.5, 3.5])}
    for _ in range(2):
        answer = run(server, "tritonoutput", **params)
        assert (answer.status_code, answer.text) == (200, "")
    rows = server.sql("SELECT jobuid, poduid, prediction, counter FROM forecast ORDER BY counter")
    assert rows == [["job-1", "pod-1", 1.5, 0], ["job-1", "pod-1", 2.5, 1], ["job-1", "pod-1", 3.5, 2]]
    bad = run(server, "sklearnoutput", **{**params, "predictions": "not json"})
    assert bad.status_code == 422 and "predictions" in bad.json()["stderr"]
    features = run(server, "sklearninput", input_table_name="forecast")
    assert features.status_code == 422 and "is not a number" in features.json()["stderr"]  # jobuid is text
    server.sql("CREATE TABLE feats (a DOUBLE, b INTEGER)")
    server.sql("INSERT INTO feats (a, b) VALUES (3.5, NULL), (1, 2)")
    server.sql("REFRESH TABLE feats")
    assert run(server, "sklearninput", input_table_name="feats").json() == {"result": [[1.0, 2.0], [3.5, 0.0]]}
