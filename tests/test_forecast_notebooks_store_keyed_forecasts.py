"""The shipped forecastinput/forecastoutput notebooks (crds/examples) through a real database handler,
the real inference runner and the real forecaster (KServe v2; skipped when the forecast extra is
missing):

- a batch of three keys at two resolutions is read onto each series' own grid, gaps (missing rows and
  NULL values) sent as null, never 0.0, shorter rows null-padded at the front; one row per (run, key,
  horizon) is stored with the time each point is for, the model and the job uid;
- the output step sent again for the same run id (a retried or redelivered execution) REPLACES the
  run's rows: a shorter horizon leaves none of the old ones, nothing is doubled; a stale Running
  execution run again by the runner stores one set under the same run id;
- bad input is refused naming it: a key with no rows, predictions that do not fit the series.
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
from forecaster_server import EXTRA_MISSING, start_forecaster

from functions import events
from functions.clients import kube
from functions.local.crstore import CrStore
from functions.local.supervisor import free_port
from functions.settings.inference import InferenceRunnerSettings
from functions.stages import inference_runner

pytestmark = pytest.mark.skipif(EXTRA_MISSING is not None, reason=EXTRA_MISSING or "")

EXAMPLES = Path(__file__).resolve().parents[1] / "crds" / "examples"
NS = "finops"
HORIZON = 8
T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
QUARTER, HOUR = 15 * 60_000, 60 * 60_000
SETTINGS = InferenceRunnerSettings(max_attempts=2, backoff_s=0.01, max_backoff_s=0.02, run_timeout_s=120)
GAPS_A = {5, 6, 7, 40}  # vm-a: no rows there
NULL_A = 12  # vm-a: a row with a NULL value


def series_rows() -> list[tuple[str, int, float | None]]:
    """vm-a: 96 quarter-hours with gaps; vm-b: 30 hours (a shorter row, another step); vm-c: 64 quarter-hours."""
    rows: list[tuple[str, int, float | None]] = []
    for i in range(96):
        if i not in GAPS_A:
            rows.append(("vm-a", T0 + i * QUARTER, None if i == NULL_A else 50.0 + 10 * ((i % 4) - 1.5)))
    rows += [("vm-b", T0 + i * HOUR, 20.0 + (i % 24)) for i in range(30)]
    rows += [("vm-c", T0 + i * QUARTER, 5.0 + (i % 8)) for i in range(64)]
    return rows


@pytest.fixture(scope="module", name="handler")
def handler_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    server = start_dbhandler(tmp_path_factory.mktemp("forecast-db"))
    try:
        for name in ("forecastinput", "forecastoutput"):
            code = yaml.safe_load((EXAMPLES / f"notebook-{name}.yaml").read_text())["spec"]["inline"]
            answer = httpx.post(f"{server.url}/compute/{name}/upload?overwrite=true", content=code.encode(),
                                headers=server.auth(), timeout=60)
            assert answer.json() == {"result": True}, answer.text
        server.sql('CREATE TABLE usage_series ("timestamp" TIMESTAMP, resourceid TEXT, average DOUBLE)')
        for key, at, value in series_rows():
            server.sql('INSERT INTO usage_series ("timestamp", resourceid, average) VALUES (?, ?, ?)', [at, key, value])
        server.sql("REFRESH TABLE usage_series")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", name="forecaster")
def forecaster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = start_forecaster(port, tmp_path_factory.mktemp("forecaster") / "forecaster.log", "--horizon", str(HORIZON),
                               "--model-dir", "/nonexistent")
    try:
        yield f"127.0.0.1:{port}/v2/models/forecaster/infer"
    finally:
        process.kill()
        process.wait(10)


def compute(handler: DbHandler, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{handler.url}/compute/{name}", json=body, headers=handler.auth(), timeout=120)


def docs(handler: DbHandler, model_url: str, table: str, keys: str, length: str = "64") -> list[dict[str, Any]]:
    api = {"endpointRef": {"name": "db", "namespace": NS}, "verb": "POST", "headers": []}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS},
         "stringData": {"server-url": handler.url, "username": "finops", "password": "s3cret"}},
        {"apiVersion": "ai.krateo.io/v1", "kind": "InferenceConfig", "metadata": {"name": "forecaster", "namespace": NS},
         "spec": {"autoDeletePolicy": "None", "image": "unused",
                  "kserve": {"modelName": "forecaster", "modelUrl": model_url, "modelVersion": "v2",
                             "modelInputName": "past_values"},
                  "storage": {"input": {"krateo": {"api": api | {"path": "/compute/forecastinput"}}},
                              "output": {"krateo": {"api": api | {"path": "/compute/forecastoutput"}}}}}},
        {"apiVersion": "ai.krateo.io/v1", "kind": "InferenceRun", "metadata": {"name": "forecast", "namespace": NS},
         "spec": {"configRef": {"name": "forecaster", "namespace": NS}, "timeoutSeconds": 120,
                  "parameters": {"input_table_name": "usage_series", "input_table_column_name": "average",
                                 "key_name": "resourceid", "key_value": keys, "input_data_length": length,
                                 "output_table_name": table}}},
    ]


def run(tmp_path: Path, handler: DbHandler, model_url: str, table: str, keys: str) -> tuple[inference_runner.RunReply, CrStore]:
    state = tmp_path / "state"
    store = CrStore(state)
    applied = [e for change in store.apply(docs(handler, model_url, table, keys)) for e in change.events][-1]
    reply = inference_runner.handle(applied.type, applied.subject, applied.data, applied.id, kube.LocalReader(state),
                                    kube.LocalStatusWriter(state), SETTINGS)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED, reply
    return reply, store


def stored(handler: DbHandler, table: str) -> list[list[Any]]:
    return handler.sql(f'SELECT run_id, series_key, horizon, forecast_for, prediction, model, job_uid, created_at '
                       f'FROM "{table}" ORDER BY run_id, series_key, horizon')


def test_the_input_keeps_gaps_as_nulls_on_each_series_grid(handler: DbHandler) -> None:
    answer = compute(handler, "forecastinput", {"input_table_name": "usage_series", "input_table_column_name": "average",
                                               "key_name": "resourceid", "key_value": "vm-a, vm-b,vm-c",
                                               "input_data_length": "64"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    a, b, c = body["result"]
    assert len(a) == len(b) == len(c) == 64
    assert [a[i - 32] for i in (40, NULL_A + 32)] == [None, 50.0 + 10 * ((NULL_A + 32) % 4 - 1.5)]  # the last 64 of 96
    assert b[:34] == [None] * 34 and b[34:] == [20.0 + (i % 24) for i in range(30)]  # 30 hours, padded at the front
    assert 0.0 not in a + b + c and c == [5.0 + (i % 8) for i in range(64)]
    assert body["series"] == [
        {"key": "vm-a", "last": "2024-03-01T23:45:00Z", "last_ms": T0 + 95 * QUARTER, "step_ms": QUARTER, "points": 63},
        {"key": "vm-b", "last": "2024-03-02T05:00:00Z", "last_ms": T0 + 29 * HOUR, "step_ms": HOUR, "points": 30},
        {"key": "vm-c", "last": "2024-03-01T15:45:00Z", "last_ms": T0 + 63 * QUARTER, "step_ms": QUARTER, "points": 64}]
    whole = compute(handler, "forecastinput", {"input_table_name": "usage_series", "input_table_column_name": "average",
                                              "key_name": "resourceid", "key_value": "vm-a", "input_data_length": "96"})
    gaps = [i for i, v in enumerate(whole.json()["result"][0]) if v is None]
    assert gaps == sorted(GAPS_A | {NULL_A})


def test_a_batch_of_three_keys_is_stored_per_key_horizon_and_time(tmp_path: Path, handler: DbHandler, forecaster: str) -> None:
    reply, _ = run(tmp_path, handler, forecaster, "forecast_batch", "vm-a,vm-b,vm-c")
    assert reply.data["inputShape"] == [3, 64, 1] and reply.data["predictions"] == 3 * HORIZON
    rows = stored(handler, "forecast_batch")
    assert len(rows) == 3 * HORIZON and {r[0] for r in rows} == {reply.data["runId"]}
    last = {"vm-a": (T0 + 95 * QUARTER, QUARTER), "vm-b": (T0 + 29 * HOUR, HOUR), "vm-c": (T0 + 63 * QUARTER, QUARTER)}
    for _, key, h, at, value, model, job, created in rows:
        assert at == last[key][0] + (h + 1) * last[key][1]
        assert (model, job, isinstance(value, float), created is not None) == ("forecaster", reply.data["uid"], True, True)
    assert {(r[1], r[2]) for r in rows} == {(k, h) for k in last for h in range(HORIZON)}
    vm_c = [r[4] for r in rows if r[1] == "vm-c"]
    assert all(4.0 <= v <= 13.0 for v in vm_c)  # a clean 8-step cycle between 5 and 12 stays in its range


def test_sending_a_runs_output_again_replaces_its_rows(tmp_path: Path, handler: DbHandler, forecaster: str) -> None:
    reply, _ = run(tmp_path, handler, forecaster, "forecast_rerun", "vm-a,vm-c")
    first = stored(handler, "forecast_rerun")
    assert len(first) == 2 * HORIZON
    run_id = reply.data["runId"]
    series = [{"key": "vm-a", "last_ms": T0, "step_ms": QUARTER}, {"key": "vm-c", "last_ms": T0, "step_ms": QUARTER}]
    again = {"output_table_name": "forecast_rerun", "job_uid": reply.data["uid"], "pod_uid": run_id, "run_id": run_id,
             "predictions": json.dumps([1.0, 2.0, 3.0, 4.0]), "series": json.dumps(series), "model_name": "forecaster"}
    for _ in range(2):  # a retried output step, then a redelivery: the same run id each time
        answer = compute(handler, "forecastoutput", again)
        assert answer.status_code == 200 and answer.json() == {"rows": 4}, answer.text
        rows = stored(handler, "forecast_rerun")
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
            ("vm-a", 0, T0 + QUARTER, 1.0), ("vm-a", 1, T0 + 2 * QUARTER, 2.0),
            ("vm-c", 0, T0 + QUARTER, 3.0), ("vm-c", 1, T0 + 2 * QUARTER, 4.0)]
    # the runner itself running the same execution again (its Running record gone stale): one set, same run id
    kube.LocalStatusWriter(tmp_path / "state").set_conditions("InferenceRun", NS, "forecast", [], {"lastRun": {
        "key": "generation:1", "uid": reply.data["uid"], "outcome": "Running", "startedAt": "2020-01-01T00:00:00Z"}})
    target = events.new(events.CR_APPLIED, "tests", {"kind": "InferenceRun", "namespace": NS, "name": "forecast"},
                        subject=f"InferenceRun/{NS}/forecast")
    second = inference_runner.handle(target.type, target.subject, target.data, target.id,
                                     kube.LocalReader(tmp_path / "state"), kube.LocalStatusWriter(tmp_path / "state"), SETTINGS)
    assert second is not None and second.type == events.INFERENCE_COMPLETED and second.data["runId"] == run_id
    rows = stored(handler, "forecast_rerun")
    assert len(rows) == 2 * HORIZON and [r[1:5] for r in rows] == [r[1:5] for r in first]


def test_bad_input_is_refused_naming_it(handler: DbHandler) -> None:
    nothing = compute(handler, "forecastinput", {"input_table_name": "usage_series", "input_table_column_name": "average",
                                                "key_name": "resourceid", "key_value": "vm-a,vm-gone",
                                                "input_data_length": "8"})
    assert nothing.status_code == 422 and "vm-gone" in nothing.text and "vm-a'" not in nothing.text
    uneven = compute(handler, "forecastoutput", {"output_table_name": "forecast_bad", "job_uid": "j", "run_id": "r",
                                                "predictions": "[1, 2, 3]", "series": json.dumps(
                                                    [{"key": "a", "last_ms": T0, "step_ms": 1},
                                                     {"key": "b", "last_ms": T0, "step_ms": 1}])})
    assert uneven.status_code == 422 and "same horizon" in uneven.text
    no_series = compute(handler, "forecastoutput", {"output_table_name": "forecast_bad", "job_uid": "j", "run_id": "r",
                                                   "predictions": "[1]"})
    assert no_series.status_code == 422 and "series" in no_series.text
