"""A forecast on the local stack: the supervisor starts the forecaster (the `forecast` extra installed;
skipped otherwise), `finops apply` of the shipped forecastinput/forecastoutput Notebooks and of the
example InferenceConfig/InferenceRun (pointed at those notebooks and at the local forecaster, the run
made one-shot) runs the inference runner through the broker, and the forecasts are in the database:
one row per key and horizon step, at the times after each series' last point.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from e2e_stack import EXAMPLES, NAMESPACE, E2EStack, secret, start_stack, wait_until

from functions.local.crstore import CrStore

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in ("kserve", "statsforecast", "numpy")),
    reason="the forecast extra is not installed: pip install -e '.[forecast]'")]
T0, QUARTER = 1_709_251_200_000, 15 * 60_000
KEYS = ("vm-a", "vm-b", "vm-c")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    s = start_stack(tmp_path_factory.mktemp("forecast"))
    yield s
    s.stop()


def example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def test_an_inference_run_stores_keyed_forecasts(stack: E2EStack) -> None:
    forecaster = stack.url("forecaster")
    assert httpx.get(f"{forecaster}/v2/health/ready", timeout=10).status_code == 200
    stack.sql('CREATE TABLE usage_series ("timestamp" TIMESTAMP, resourceid TEXT, average DOUBLE)')
    for n, key in enumerate(KEYS):
        for i in range(48 + 8 * n):
            if i % 17 != 5:  # gaps
                stack.sql('INSERT INTO usage_series ("timestamp", resourceid, average) VALUES (?, ?, ?)',
                          [T0 + i * QUARTER, key, 10.0 * (n + 1) + i % 4])
    stack.sql("REFRESH TABLE usage_series")
    db = stack.info()["db"]
    config = example("inferenceconfig-forecaster.yaml")
    config["spec"]["kserve"]["modelUrl"] = f"{forecaster}/v2/models/forecaster/infer"
    config["spec"]["storage"]["input"]["krateo"]["api"]["path"] = "/compute/forecastinput"
    config["spec"]["storage"]["output"]["krateo"]["api"]["path"] = "/compute/forecastoutput"
    run = copy.deepcopy(example("inferencerun-forecaster-daily.yaml"))
    del run["spec"]["schedule"]  # one-shot: it runs when applied
    run["spec"]["parameters"] |= {"input_table_name": "usage_series", "key_value": ",".join(KEYS),
                                  "input_data_length": "64", "output_table_name": "usage_forecast"}
    endpoint = secret("finops-database-handler-endpoint", {"server-url": db["url"], "username": db["user"],
                                                           "password": db["password"]})
    stack.apply(example("notebook-forecastinput.yaml"), example("notebook-forecastoutput.yaml"))
    stack.apply(endpoint, config, run)

    def rows() -> list[list[Any]]:
        try:
            return stack.sql("SELECT series_key, horizon, forecast_for, prediction, model FROM usage_forecast "
                             "ORDER BY series_key, horizon")
        except Exception:  # the table does not exist before the output notebook ran
            return []

    stored = wait_until(lambda: len(rows()) >= 3 * 96 and rows(), timeout=180, what="the forecasts in usage_forecast")
    assert len(stored) == 3 * 96  # the forecaster's default horizon, per key
    for n, key in enumerate(KEYS):
        last = T0 + (48 + 8 * n - 1) * QUARTER
        mine = [r for r in stored if r[0] == key]
        assert [r[1] for r in mine] == list(range(96))
        assert [r[2] for r in mine] == [last + (h + 1) * QUARTER for h in range(96)]
        assert all(r[4] == "forecaster" for r in mine)
    def outcome() -> dict[str, Any] | None:  # written after the output step: the rows may come first
        got = CrStore(stack.state).get("InferenceRun", NAMESPACE, "forecaster-usage-daily") or {}
        last = got.get("status", {}).get("lastRun") or {}
        return last if last.get("outcome") not in (None, "Running") else None

    applied = wait_until(outcome, timeout=60, what="the run's outcome")
    assert applied["outcome"] == "Succeeded", applied
    assert applied["predictions"] == 3 * 96 and not stack.deadletters()
