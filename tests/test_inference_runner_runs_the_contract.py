"""The inference runner runs an InferenceRun's Contract against real parts on 127.0.0.1.

Real parts: a database handler (tests/dbhandler_server.py, embedded engine) holding usage rows and
Krateo's shipped notebooks tritoninput / tritonoutput (crds/examples) plus `emptyinput` (answers
`{"result": []}`, as Krateo's notebook did for no rows); a KServe v2 model server computing seasonal
naive forecasts (tests/v2_infer_server.py); the local CR store and its status writer. Nothing of ours
is mocked.

Cases:
- success, through the real functions-framework target: the forecast rows are stored (jobuid = the
  run's uid, poduid = the run id, counter = horizon index, the seasonal naive values), the reply is
  io.finops.inference.completed, the status says Succeeded=True with lastRun Succeeded and
  status.contract (base64) equals the Contract's bytes; the model got one FP32 [1, L, 1] tensor
  named modelInputName at modelUrl with http:// put in front; the stored run still validates;
- conditions: the runner writes only its own `Succeeded` (Unknown while running, True, False with the
  step's reason), merged into the conditions read just before its patch: the bridge's Ready and
  Synced written meanwhile stay, and the bridge's status keeps Succeeded in turn;
- modelUrl: a scheme in capitals is a scheme (not prefixed again); a link-local address is refused
  unless FINOPS_OUTBOUND_ALLOW_LINK_LOCAL lists it;
- redelivery: the same event again runs nothing; a run in progress is not started twice (503 with
  Retry-After, so the broker keeps the event), a stale one is; a new generation runs again under a
  new run id;
- a failing model: 5xx is tried FINOPS_INFERENCE_MAX_ATTEMPTS times then fails the infer step
  (exit code 4, Succeeded=False InferFailed, io.finops.inference.failed, retryable), nothing stored; a 400 fails at
  once; one 503 then success is retried and succeeds; a missing output notebook fails the output step;
- empty input: no rows (tritoninput's 422) and `{"result": []}` both fail the input step (exit 3)
  saying so; the model is never called;
- the contract step: a missing InferenceConfig fails it (no contract to record); an output provider
  that is not krateo fails it before the model is called, with the contract recorded;
- a scheduled run: applied records its contract and runs nothing; each tick runs once (a repeated
  tick does not), each under its own run id;
- the input must be a B x L matrix of numbers (`[[]]`, no `result`, ragged rows, a row of nulls only, text fail the
  input step naming the cell); the output notebook gets run_id (= pod_uid, which a parameter cannot
  change), the predictions as JSON text and the parameters; the model's answer is read as v2 says
  (nested data flattened; no outputs, no predictions or a null fail the infer step); the run's
  timeoutSeconds stops a slow model;
- an event for another kind or of another type is refused (400); one for a run that is gone, or a
  cr.deleted, does nothing;
- the settings: read from the environment, a bad value named by its variable.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import DbHandler, start_dbhandler
from functions_framework import create_app
from v2_infer_server import ModelServer, model_server, seasonal_naive

from functions import bridge, events, main
from functions.clients import kube
from functions.codecs import inference_contract as ic
from functions.errors import InvalidInput, Misconfigured, Unavailable
from functions.local.crstore import CrStore
from functions.models.inference import InferenceRun
from functions.models.k8s import now_rfc3339
from functions.serving import wiring
from functions.settings.inference import InferenceRunnerSettings
from functions.stages import inference_runner

EXAMPLES = Path(__file__).resolve().parents[1] / "crds" / "examples"
NS = "finops"
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-forecast"
SERIES = [10.0, 20.0, 30.0, 40.0, 11.0, 21.0, 31.0, 41.0, 12.0, 22.0, 32.0, 42.0]
SEASON, HORIZON = 4, 8
SETTINGS = InferenceRunnerSettings(max_attempts=3, backoff_s=0.01, max_backoff_s=0.02, run_timeout_s=60)
ANSWERS = {  # notebooks answering these bodies: what Krateo's runner would have crashed on or misread
    "emptyinput": {"result": []}, "emptyrow": {"result": [[]]}, "noresult": {"rows": [[1.0]]},
    "ragged": {"result": [[1.0, 2.0], [3.0]]}, "nulls": {"result": [[1.0, 2.0], [None, None]]}, "text": {"result": [["1.5"]]},
}
RECORD_OUTPUT = """import json
from functions.notebooks_api import params
cursor.execute('CREATE TABLE IF NOT EXISTS output_bodies (body TEXT)')
cursor.execute('INSERT INTO output_bodies (body) VALUES (?)', [json.dumps(params(), sort_keys=True)])
cursor.execute('REFRESH TABLE output_bodies')
"""


def answering(body: dict[str, Any]) -> str:
    return f"from functions.notebooks_api import print_json\n\nprint_json({body!r})\n"


def usage_row(minute: int, value: float) -> dict[str, Any]:
    labels = {"ResourceId": VM, "metricName": "Percentage CPU", "timestamp": f"2024-03-01T{10 + minute // 60:02d}:{minute % 60:02d}:00Z",
              "average": str(value), "unit": "Percent"}
    return {"labels": labels, "value": value, "timestamp": 1700000000}


@pytest.fixture(scope="module", name="handler")
def handler_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    server = start_dbhandler(tmp_path_factory.mktemp("inference-db"))
    try:
        notebooks = {n: yaml.safe_load((EXAMPLES / f"notebook-{n}.yaml").read_text())["spec"]["inline"]
                     for n in ("tritoninput", "tritonoutput")} | {"recordoutput": RECORD_OUTPUT}
        notebooks |= {name: answering(body) for name, body in ANSWERS.items()}
        for name, code in notebooks.items():
            answer = httpx.post(f"{server.url}/compute/{name}/upload?overwrite=true", content=code.encode(),
                                headers=server.auth(), timeout=60)
            assert answer.json() == {"result": True}, answer.text
        rows = [usage_row(15 * i, v) for i, v in enumerate(SERIES)]
        assert server.upload(rows, {"table": "usage", "type": "resource"}).status_code == 200
        yield server
    finally:
        server.stop()


@dataclass
class Stack:
    """The local CR store with the endpoint Secret, an InferenceConfig and an InferenceRun."""

    store: CrStore
    state: Path
    table: str

    @property
    def reader(self) -> kube.LocalReader:
        return kube.LocalReader(self.state)

    def apply(self, *docs: dict[str, Any]) -> list[events.Event]:
        return [e for change in self.store.apply(list(docs)) for e in change.events]

    def run(self, name: str = "forecast") -> dict[str, Any]:
        got = self.store.get("InferenceRun", NS, name)
        assert got is not None
        return got

    def handle(self, event: events.Event, settings: InferenceRunnerSettings = SETTINGS) -> inference_runner.RunReply | None:
        return inference_runner.handle(event.type, event.subject, event.data, event.id, self.reader,
                                       kube.LocalStatusWriter(self.state), settings)

    def rows(self, handler: DbHandler) -> list[list[Any]]:
        return handler.sql(f'SELECT jobuid, poduid, prediction, counter FROM "{self.table}" ORDER BY poduid, counter')


def secret(handler: DbHandler) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "finops-database-handler-endpoint", "namespace": NS},
            "stringData": {"server-url": handler.url, "username": "finops", "password": "s3cret"}}


def config(model: ModelServer, name: str = "forecaster", output_path: str = "/compute/tritonoutput",
           input_path: str = "/compute/tritoninput") -> dict[str, Any]:
    def api(path: str) -> dict[str, Any]:
        return {"api": {"endpointRef": {"name": "finops-database-handler-endpoint", "namespace": NS}, "path": path,
                        "verb": "POST", "headers": ["Accept: application/json", "Content-Type: application/json"]}}

    return {"apiVersion": "ai.krateo.io/v1", "kind": "InferenceConfig", "metadata": {"name": name, "namespace": NS},
            "spec": {"autoDeletePolicy": "None", "image": "unused", "storage": {"input": {"krateo": api(input_path)},
                                                                               "output": {"krateo": api(output_path)}},
                     "kserve": {"modelName": "seasonal-naive", "modelUrl": model.url, "modelVersion": "v2",
                                "modelInputName": "past_values"}}}


def run_doc(table: str, name: str = "forecast", config_name: str = "forecaster", schedule: str | None = None,
            **parameters: str) -> dict[str, Any]:
    params = {"input_table_name": "usage", "input_table_column_name": "average", "key_name": "resourceid",
              "key_value": VM, "input_data_length": "512", "output_table_name": table} | parameters
    spec: dict[str, Any] = {"configRef": {"name": config_name, "namespace": NS}, "timeoutSeconds": 60, "parameters": params}
    if schedule:
        spec["schedule"] = schedule
    return {"apiVersion": "ai.krateo.io/v1", "kind": "InferenceRun", "metadata": {"name": name, "namespace": NS}, "spec": spec}


@pytest.fixture(name="model")
def model_fixture() -> Iterator[ModelServer]:
    with model_server(SEASON, HORIZON) as server:
        yield server


@pytest.fixture(name="stack")
def stack_fixture(tmp_path: Path, handler: DbHandler, request: pytest.FixtureRequest) -> Stack:
    table = "forecast_" + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    stack = Stack(CrStore(tmp_path / "state"), tmp_path / "state", table)
    stack.apply(secret(handler))
    handler.sql(f'CREATE TABLE IF NOT EXISTS "{table}" (jobuid TEXT, poduid TEXT, prediction DOUBLE, counter INT, '
                "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (jobuid, poduid, prediction, counter))")
    return stack


def conditions_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in run["status"]["conditions"]}


def ping(name: str = "forecast") -> events.Event:
    return events.new(events.PING, f"/apis/v1/namespaces/{NS}/pingsources/{name}-inference",
                      {"kind": "InferenceRun", "namespace": NS, "name": name}, finopstarget="inference")


# ---- success --------------------------------------------------------------------------------------


@pytest.fixture(name="target")
def target_fixture(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real inference_runner target of functions/main.py over this stack's state directory."""
    for name, value in {"FINOPS_STATE_DIR": str(stack.state), "FINOPS_AUTH": "open", "FINOPS_INFERENCE_BACKOFF_S": "0.01",
                        "FINOPS_INFERENCE_MAX_BACKOFF_S": "0.02"}.items():
        monkeypatch.setenv(name, value)
    caches = (wiring.settings, wiring.reader, wiring.status_writer, wiring.caller_gate)
    for cached in caches:
        cached.cache_clear()
    yield create_app("inference_runner", str(Path(main.__file__))).test_client()
    for cached in caches:
        cached.cache_clear()


def test_a_run_stores_its_forecast_and_reports_it(stack: Stack, handler: DbHandler, model: ModelServer, target: Any) -> None:
    (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
    headers, body = events.to_binary(applied)
    answer = target.post("/", headers=headers, data=body)
    assert answer.status_code == 200 and answer.headers["ce-type"] == events.INFERENCE_COMPLETED, answer.data
    data = json.loads(answer.data)
    run = stack.run()
    uid, last = run["metadata"]["uid"], run["status"]["lastRun"]
    assert data | {"startedAt": None, "finishedAt": None} == {
        "run": f"InferenceRun/{NS}/forecast", "uid": uid, "generation": 1, "runId": last["runId"], "trigger": events.CR_APPLIED,
        "jobName": ic.job_name("inf", "forecast", uid), "predictions": HORIZON, "inputShape": [1, len(SERIES), 1],
        "attempts": {"input": 1, "infer": 1, "output": 1}, "startedAt": None, "finishedAt": None}
    expected = seasonal_naive(SERIES, SEASON, HORIZON)
    assert stack.rows(handler) == [[uid, last["runId"], v, i] for i, v in enumerate(expected)]
    assert conditions_of(run)["Succeeded"] | {"lastTransitionTime": None} == {
        "type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": None, "message": last["message"]}
    assert not {"Ready", "Synced"} & set(conditions_of(run))  # the bridge's, never the runner's
    assert (last["outcome"], last["exitCode"], last["predictions"], last["generation"], run["status"]["attempts"]) == (
        "Succeeded", 0, HORIZON, 1, 3)
    stored_config = stack.store.get("InferenceConfig", NS, "forecaster")
    assert stored_config is not None
    assert base64.b64decode(run["status"]["contract"]) == ic.render(ic.build(run, stored_config))
    InferenceRun.model_validate(run)  # what the runner writes is what the model declares
    (call,) = model.calls
    tensor = call["body"]["inputs"][0]
    assert (tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]) == ("past_values", "FP32", [1, 12, 1], [SERIES])


# ---- redelivery -----------------------------------------------------------------------------------


def test_a_redelivered_event_runs_nothing_and_a_new_generation_runs_again(stack: Stack, handler: DbHandler,
                                                                         model: ModelServer) -> None:
    (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
    first = stack.handle(applied)
    assert first is not None and first.type == events.INFERENCE_COMPLETED
    assert stack.handle(applied) is None and stack.handle(copy.deepcopy(applied)) is None
    assert len(model.calls) == 1 and len(stack.rows(handler)) == HORIZON
    (changed,) = stack.apply(run_doc(stack.table, input_data_length="8"))
    second = stack.handle(changed)
    assert second is not None and second.type == events.INFERENCE_COMPLETED and second.data["generation"] == 2
    assert second.data["runId"] != first.data["runId"] and second.data["inputShape"] == [1, 8, 1]
    assert len(model.calls) == 2 and len({r[1] for r in stack.rows(handler)}) == 2


def test_a_run_in_progress_is_not_started_twice_but_a_stale_one_is(stack: Stack, model: ModelServer) -> None:
    (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
    run = stack.run()
    key, uid = "generation:1", run["metadata"]["uid"]
    writer = kube.LocalStatusWriter(stack.state)
    writer.set_conditions("InferenceRun", NS, "forecast", [], {"lastRun": {
        "key": key, "uid": uid, "outcome": "Running", "startedAt": now_rfc3339()}})
    with pytest.raises(Unavailable, match="not started twice") as refused:  # 503: the broker delivers it again
        stack.handle(applied)
    assert 60 < refused.value.retry_after <= 121 and refused.value.status == 503 and not model.calls
    writer.set_conditions("InferenceRun", NS, "forecast", [], {"lastRun": {
        "key": key, "uid": uid, "outcome": "Running", "startedAt": "2020-01-01T00:00:00Z"}})
    reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED and len(model.calls) == 1


# ---- conditions: each writer its own types --------------------------------------------------------


class BridgeMeanwhile(kube.LocalStatusWriter):
    """The local status writer, with the bridge writing Ready/Synced (as operator/handlers.py does, from
    the status it read) right after the runner's first patch: what a resync during a run does."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.state)
        self.stack, self.seen = stack, list[str]()

    def set_conditions(self, kind: str, namespace: str, name: str, conditions: list[dict[str, Any]],
                       extra: dict[str, Any] | None = None) -> None:
        super().set_conditions(kind, namespace, name, conditions, extra)
        self.seen.append(next(c["status"] for c in conditions if c["type"] == "Succeeded"))
        if len(self.seen) == 1:
            body = self.stack.run()
            rec = bridge.reconcile(body, lambda k, ns, n: self.stack.reader.get(k, ns, n) if k != "Secret"
                                   else self.stack.reader.get_secret(ns, n))
            status = bridge.status(rec, body.get("status"), now_rfc3339())
            super().set_conditions(kind, namespace, name, status["conditions"], {"observedGeneration": 1})


def test_the_runner_and_the_bridge_keep_each_others_conditions(stack: Stack, model: ModelServer) -> None:
    (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
    writer = BridgeMeanwhile(stack)
    reply = inference_runner.handle(applied.type, applied.subject, applied.data, applied.id, stack.reader, writer, SETTINGS)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED and writer.seen == ["Unknown", "True"]
    conds = conditions_of(stack.run())
    assert {t: (c["status"], c["reason"]) for t, c in conds.items()} == {
        "Ready": ("True", "Available"), "Synced": ("True", "ReconcileSuccess"), "Succeeded": ("True", "Succeeded")}
    # the bridge's next resync keeps the runner's outcome
    body = stack.run()
    rec = bridge.reconcile(body, lambda k, ns, n: stack.reader.get(k, ns, n) if k != "Secret" else stack.reader.get_secret(ns, n))
    again = {c["type"]: c for c in bridge.status(rec, body["status"], now_rfc3339())["conditions"]}
    assert again["Succeeded"] == conds["Succeeded"] and again["Ready"]["lastTransitionTime"] == conds["Ready"]["lastTransitionTime"]


# ---- modelUrl -------------------------------------------------------------------------------------


def test_a_model_url_scheme_in_capitals_is_a_scheme(stack: Stack, handler: DbHandler, model: ModelServer) -> None:
    shouted = config(model)
    shouted["spec"]["kserve"]["modelUrl"] = "HTTP://" + model.url
    (applied,) = stack.apply(shouted, run_doc(stack.table))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED, reply
    assert len(model.calls) == 1 and len(stack.rows(handler)) == HORIZON


def test_a_link_local_model_url_is_refused_unless_listed(stack: Stack, model: ModelServer) -> None:
    metadata = config(model)
    metadata["spec"]["kserve"]["modelUrl"] = "169.254.169.254/v2/models/m/infer"
    (applied,) = stack.apply(metadata, run_doc(stack.table))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["retryable"]) == ("infer", False)
    assert "FINOPS_OUTBOUND_ALLOW_LINK_LOCAL" in reply.data["error"]
    listed = SETTINGS.model_copy(update={"outbound_allow_link_local": "169.254.169.254:80", "max_attempts": 1,
                                         "call_timeout_s": 0.5})
    (changed,) = stack.apply(run_doc(stack.table, input_data_length="11"))
    again = stack.handle(changed, listed)  # let through: whatever answers there (nothing, here), not refused
    assert again is not None and again.data["step"] == "infer" and "link-local" not in again.data["error"]


# ---- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "calls", "retryable"), [
    pytest.param([500] * 10, 3, True, id="5xx-tried-max-attempts"),
    pytest.param([400], 1, False, id="400-not-retried"),
])
def test_a_failing_model_fails_the_infer_step_and_stores_nothing(stack: Stack, handler: DbHandler, statuses: list[int],
                                                                 calls: int, retryable: bool) -> None:
    with model_server(SEASON, HORIZON, statuses=statuses) as model:
        (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
        reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_FAILED
    assert (reply.data["step"], reply.data["exitCode"], reply.data["attempts"], reply.data["retryable"]) == ("infer", 4, calls, retryable)
    assert str(statuses[0]) in reply.data["error"] and len(model.calls) == calls
    run = stack.run()
    ready = conditions_of(run)["Succeeded"]
    assert (ready["status"], ready["reason"]) == ("False", "InferFailed")
    assert ready["message"].startswith("infer step failed (Krateo exit code 4)")
    assert (calls > 1) == (f"after {calls} tries" in ready["message"])
    last = run["status"]["lastRun"]
    assert (last["outcome"], last["step"], last["exitCode"]) == ("Failed", "infer", 4)
    assert stack.rows(handler) == []
    InferenceRun.model_validate(run)


def test_one_unavailable_answer_is_retried_and_the_run_succeeds(stack: Stack, handler: DbHandler) -> None:
    with model_server(SEASON, HORIZON, statuses=[503]) as model:
        (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
        reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED
    assert reply.data["attempts"] == {"input": 1, "infer": 2, "output": 1} and len(model.calls) == 2
    assert len(stack.rows(handler)) == HORIZON


def test_a_missing_output_notebook_fails_the_output_step(stack: Stack, handler: DbHandler, model: ModelServer) -> None:
    (applied,) = stack.apply(config(model, output_path="/compute/nosuchnotebook"), run_doc(stack.table))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["exitCode"]) == ("output", 5)
    assert "404" in reply.data["error"] and len(model.calls) == 1
    assert conditions_of(stack.run())["Succeeded"]["reason"] == "OutputFailed"


@pytest.mark.parametrize(("input_path", "key_value", "said"), [
    pytest.param("/compute/tritoninput", "no-such-resource", "no rows", id="no-rows"),
    pytest.param("/compute/emptyinput", VM, "returned no data", id="empty-result"),
])
def test_empty_input_fails_the_input_step_clearly(stack: Stack, handler: DbHandler, model: ModelServer,
                                                  input_path: str, key_value: str, said: str) -> None:
    (applied,) = stack.apply(config(model, input_path=input_path), run_doc(stack.table, key_value=key_value))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_FAILED
    assert (reply.data["step"], reply.data["exitCode"], reply.data["attempts"]) == ("input", 3, 1)
    assert said in reply.data["error"] and not model.calls
    ready = conditions_of(stack.run())["Succeeded"]
    assert (ready["reason"], said in ready["message"]) == ("InputFailed", True)
    assert stack.rows(handler) == []


@pytest.mark.parametrize(("notebook", "loc"), [
    ("emptyrow", "result"), ("noresult", "result"), ("ragged", "result[1]"), ("nulls", "result[1]"),
    ("text", "result[0][0]"),
])
def test_an_input_that_is_not_a_matrix_of_numbers_fails_the_input_step(stack: Stack, model: ModelServer, notebook: str,
                                                                        loc: str) -> None:
    (applied,) = stack.apply(config(model, input_path=f"/compute/{notebook}"), run_doc(stack.table))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["exitCode"]) == ("input", 3)
    assert loc in {e["loc"] for e in reply.data["errors"]} and not model.calls


def test_the_output_notebook_gets_the_run_id_the_predictions_and_the_parameters(stack: Stack, handler: DbHandler,
                                                                                model: ModelServer) -> None:
    (applied,) = stack.apply(config(model, output_path="/compute/recordoutput"),
                             run_doc(stack.table, run_id="a parameter cannot change it", job_uid="but this one can"))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and reply.type == events.INFERENCE_COMPLETED
    bodies = [json.loads(b) for (b,) in handler.sql("SELECT body FROM output_bodies")]
    body = next(b for b in bodies if b.get("run_id") == reply.data["runId"])
    assert body["pod_uid"] == reply.data["runId"] and body["job_uid"] == "but this one can"
    assert json.loads(body["predictions"]) == seasonal_naive(SERIES, SEASON, HORIZON)
    assert body["output_table_name"] == stack.table and body["key_value"] == VM


@pytest.mark.parametrize(("answer", "ok", "loc"), [
    pytest.param({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2, 1], "data": [[[1.5], [2.5]]]}]}, True, "",
                 id="nested-data-flattened"),
    pytest.param({"outputs": []}, False, "outputs", id="no-outputs"),
    pytest.param({"outputs": [{"name": "y", "data": [1.0, None]}]}, False, "outputs[0].data[1]", id="null-prediction"),
    pytest.param({"outputs": [{"name": "y", "data": []}]}, False, "outputs[0].data", id="no-predictions"),
])
def test_the_models_answer_is_read_as_v2_says(stack: Stack, handler: DbHandler, answer: dict[str, Any], ok: bool, loc: str) -> None:
    with model_server(SEASON, HORIZON, answer=answer) as model:
        (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
        reply = stack.handle(applied)
    assert reply is not None
    if ok:
        assert reply.type == events.INFERENCE_COMPLETED and [r[2] for r in stack.rows(handler)] == [1.5, 2.5]
    else:
        assert (reply.data["step"], reply.data["exitCode"]) == ("infer", 4) and loc in {e["loc"] for e in reply.data["errors"]}
        assert stack.rows(handler) == []


def test_the_runs_time_limit_stops_a_slow_model(stack: Stack, handler: DbHandler) -> None:
    slow = run_doc(stack.table)
    slow["spec"]["timeoutSeconds"] = 2
    with model_server(SEASON, HORIZON, delay_s=4) as model:
        (applied,) = stack.apply(config(model), slow)[-1:]
        reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["attempts"]) == ("infer", 1)
    assert "time limit of 2 s" in reply.data["error"] and stack.rows(handler) == []


# ---- the contract step ----------------------------------------------------------------------------


def test_a_missing_config_fails_the_contract_step(stack: Stack, model: ModelServer) -> None:
    (applied,) = stack.apply(run_doc(stack.table, config_name="nowhere"))
    reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["exitCode"]) == ("contract", 2)
    assert "InferenceConfig finops/nowhere not found" in reply.data["error"]
    run = stack.run()
    assert conditions_of(run)["Succeeded"]["reason"] == "ContractFailed" and "contract" not in run["status"]
    assert not model.calls


def test_an_output_provider_this_runner_cannot_read_fails_before_the_model_is_called(stack: Stack, model: ModelServer) -> None:
    custom = config(model)
    custom["spec"]["storage"]["output"] = {"custom": {"s3": {"bucket": "b", "moreCustom": "data"}}}
    (applied,) = stack.apply(custom, run_doc(stack.table))[-1:]
    reply = stack.handle(applied)
    assert reply is not None and (reply.data["step"], reply.data["exitCode"]) == ("contract", 2)
    assert {e["loc"] for e in reply.data["errors"]} == {"config.spec.storage.output"} and not model.calls
    contract = ic.parse(base64.b64decode(stack.run()["status"]["contract"]))
    assert contract.output == {"custom": {"s3": {"bucket": "b", "moreCustom": "data"}}}


# ---- a scheduled run ------------------------------------------------------------------------------


def test_a_scheduled_run_runs_once_per_tick(stack: Stack, handler: DbHandler, model: ModelServer) -> None:
    (applied,) = stack.apply(config(model), run_doc(stack.table, schedule="0 1 * * *"))[-1:]
    assert stack.handle(applied) is None and not model.calls
    assert "contract" in stack.run()["status"] and "lastRun" not in stack.run()["status"]
    tick, other = ping(), ping()
    first = stack.handle(tick)
    assert first is not None and first.type == events.INFERENCE_COMPLETED and first.data["trigger"] == events.PING
    assert stack.handle(tick) is None
    second = stack.handle(other)
    assert second is not None and second.data["runId"] != first.data["runId"]
    assert len(model.calls) == 2 and len({r[1] for r in stack.rows(handler)}) == 2 and len(stack.rows(handler)) == 2 * HORIZON


# ---- what is not a run ----------------------------------------------------------------------------


def test_events_that_name_no_run_of_ours_are_refused_or_do_nothing(stack: Stack, model: ModelServer) -> None:
    with pytest.raises(InvalidInput, match="not FocusConfig"):
        stack.handle(events.new(events.PING, "/t", {"kind": "FocusConfig", "namespace": NS, "name": "x"}))
    with pytest.raises(InvalidInput, match="takes"):
        stack.handle(events.new("io.finops.export.completed", "/t", {"kind": "InferenceRun", "namespace": NS, "name": "x"}))
    assert stack.handle(ping("gone")) is None  # a run deleted meanwhile
    (applied,) = stack.apply(config(model), run_doc(stack.table))[-1:]
    deleted = stack.store.delete("InferenceRun", NS, "forecast").events[0]
    assert stack.handle(deleted) is None and stack.handle(applied) is None and not model.calls


def test_the_runner_settings_are_read_from_the_environment_and_checked() -> None:
    got = InferenceRunnerSettings.from_env({"FINOPS_INFERENCE_MAX_ATTEMPTS": "5", "FINOPS_INFERENCE_BACKOFF_S": "0.5"})
    assert (got.max_attempts, got.backoff_s, got.max_backoff_s, got.run_timeout_s) == (5, 0.5, 30.0, 540.0)
    with pytest.raises(Misconfigured) as caught:
        InferenceRunnerSettings.from_env({"FINOPS_INFERENCE_BACKOFF_S": "5", "FINOPS_INFERENCE_MAX_BACKOFF_S": "1",
                                          "FINOPS_INFERENCE_MAX_ATTEMPTS": "0"})
    assert "FINOPS_INFERENCE_MAX_ATTEMPTS" in {e.loc for e in caught.value.errors}
