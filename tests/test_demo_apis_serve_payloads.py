"""The demo APIs answer like the real sources, over HTTP on 127.0.0.1.

Cases: the cost API refuses a missing or wrong bearer token (401 + WWW-Authenticate); it serves the
FOCUS CSV as text/csv under /focus/export.csv and /focus/costs.csv, one billing period with
?period=YYYY-MM (404 for an unknown one), and the gzip export as binary/octet-stream whose gunzipped
bytes equal the CSV; publish() swaps the data for the next request. The usage API refuses missing
or wrong basic credentials; it answers the Azure Monitor shape (value[].name.value, unit,
timeseries[].data[].timeStamp/average) with one point per interval of the timespan, the same values
on every call, 400 for an unknown metric, 404 for other paths. The Prometheus text API serves a
valid 0.0.4 exposition (prometheus_client parses it) and can require a bearer token.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from functions.demo.demo_apis import DemoCostApi, DemoUsageApi, PrometheusTextApi
from functions.demo.focus_rows import FOCUS_COLUMNS, focus_rows, restate


@pytest.fixture(scope="module")
def cost() -> Iterator[DemoCostApi]:
    with DemoCostApi(300, seed=1, token="t0k") as api:
        yield api


@pytest.fixture(scope="module")
def usage() -> Iterator[DemoUsageApi]:
    with DemoUsageApi(username="u", password="p", end=datetime(2026, 10, 2, tzinfo=UTC)) as api:
        yield api


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dTpw"}],
                         ids=["missing", "wrong-token", "basic-instead"])
def test_cost_api_needs_the_bearer_token(cost: DemoCostApi, headers: dict[str, str]) -> None:
    resp = httpx.get(cost.url + "/focus/export.csv", headers=headers)
    assert resp.status_code == 401 and "Bearer" in resp.headers["www-authenticate"]


@pytest.mark.parametrize("path", ["/focus/export.csv", "/focus/costs.csv?period=current"], ids=["export", "costs-alias"])
def test_cost_api_serves_the_focus_csv(cost: DemoCostApi, path: str) -> None:
    resp = httpx.get(cost.url + path, headers={"Authorization": "Bearer t0k"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert tuple(rows[0]) == FOCUS_COLUMNS and rows == list(focus_rows(300, seed=1))
    assert resp.content == cost.csv_path.read_bytes()


def test_cost_api_serves_one_billing_period(cost: DemoCostApi) -> None:
    auth = {"Authorization": "Bearer t0k"}
    resp = httpx.get(cost.url + "/focus/export.csv?period=2026-10", headers=auth)
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert rows and {r["BillingPeriodStart"][:7] for r in rows} == {"2026-10"}
    assert httpx.get(cost.url + "/focus/export.csv?period=2031-01", headers=auth).status_code == 404
    assert httpx.get(cost.url + "/nope.csv", headers=auth).status_code == 404


def test_cost_api_serves_gzip_as_s3_does(cost: DemoCostApi) -> None:
    resp = httpx.get(cost.url + "/focus/export.csv.gz", headers={"Authorization": "Bearer t0k"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "binary/octet-stream"
    assert "content-encoding" not in resp.headers
    assert gzip.decompress(resp.content) == cost.csv_path.read_bytes()


def test_publish_swaps_the_data() -> None:
    with DemoCostApi(50, token="x") as api:
        restated = list(restate(focus_rows(50), "2026-09", 2))
        api.publish(restated)
        resp = httpx.get(api.url + "/focus/export.csv", headers={"Authorization": "Bearer x"})
        assert list(csv.DictReader(io.StringIO(resp.text))) == restated


RID = "/subscriptions/demo-sub/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/demo-vm"


@pytest.mark.parametrize("auth", [None, ("u", "wrong"), ("x", "p")], ids=["missing", "wrong-password", "wrong-user"])
def test_usage_api_needs_basic_auth(usage: DemoUsageApi, auth: tuple[str, str] | None) -> None:
    resp = httpx.get(f"{usage.url}{RID}/providers/microsoft.insights/metrics", auth=auth)
    assert resp.status_code == 401 and "Basic" in resp.headers["www-authenticate"]


@pytest.mark.parametrize(("interval", "points"), [("PT1H", 24), ("PT15M", 96)], ids=["hourly", "quarter-hourly"])
def test_usage_api_answers_the_azure_monitor_shape(usage: DemoUsageApi, interval: str, points: int) -> None:
    url = f"{usage.url}{RID}/providers/Microsoft.Insights/metrics"
    params = {"api-version": "2023-10-01", "metricnames": "Percentage CPU,Available Memory Bytes", "interval": interval}
    first = httpx.get(url, params=params, auth=("u", "p"))
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/json")
    body = first.json()
    assert [v["name"]["value"] for v in body["value"]] == ["Percentage CPU", "Available Memory Bytes"]
    assert [v["unit"] for v in body["value"]] == ["Percent", "Bytes"]
    data = body["value"][0]["timeseries"][0]["data"]
    assert len(data) == points and data[0]["timeStamp"] == "2026-10-01T00:00:00Z"
    assert all(0 <= d["average"] <= 100 for d in data)
    assert httpx.get(url, params=params, auth=("u", "p")).json() == body


def test_usage_api_timespan_and_errors(usage: DemoUsageApi) -> None:
    url = f"{usage.url}{RID}/providers/microsoft.insights/metrics"
    span = httpx.get(url, params={"timespan": "2026-09-01T00:00:00Z/2026-09-01T06:00:00Z"}, auth=("u", "p")).json()
    assert len(span["value"][0]["timeseries"][0]["data"]) == 6
    assert httpx.get(url, params={"metricnames": "Bogus"}, auth=("u", "p")).status_code == 400
    assert httpx.get(url, params={"interval": "PT7M"}, auth=("u", "p")).status_code == 400
    assert httpx.get(usage.url + "/other", auth=("u", "p")).status_code == 404


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["open", "bearer"])
def test_prometheus_text_api_serves_a_valid_exposition(token: str | None) -> None:
    with PrometheusTextApi(token=token) as api:
        if token:
            assert httpx.get(api.url + "/metrics").status_code == 401
        resp = httpx.get(api.url + "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(resp.text)}
        assert {"node_load1", "node_filesystem_avail_bytes", "demo_requests", "demo_request_duration_seconds"} <= set(families)
        assert httpx.get(api.url + "/other").status_code in (401, 404)
