"""The forecaster's real KServe model server (`python -m functions.stages.forecaster`, a subprocess on
127.0.0.1) answers the Open Inference Protocol v2 over HTTP.

Cases (skipped when the forecast extra is not installed, except the last two):
- Krateo's TTM runner's request (past_values FP32 [1, 512, 1], data the 1 x 512 matrix nested) is
  answered 200: outputs[0] is forecast_output FP32 [1, 96] with 96 finite numbers flat, as the runner reads;
- a batch of 48 series (flat data, shape [B, L]) answers [48, 96] equal to the pure forecast of the
  same rows; `horizon` and `season_length` parameters (strings, as Krateo's are) shape the answer;
- KServe's binary tensor extension (raw FP32 in, binary outputs back) answers as the JSON request;
- gaps sent as null and series of different lengths (null-padded at the front) are answered, the
  gaps never read as zero, a padded row forecast as the row alone;
- bad input answers 400 with the reason, each bad field named: two channels, data that does not fill
  the shape, text datatype, two inputs none named past_values, a row with no value, a bad horizon, a
  body that is not JSON or not a v2 request, more series than --max-series; a body over
  --max-body-bytes answers 413; an unknown model 404;
- GET /v2/health/live, /v2/health/ready, /v2/models/forecaster/ready, /v2/models (the names served)
  and the model's metadata (its input and outputs);
- a model directory holding TTM weights (Krateo's modelcar layout) is logged as TTM not built yet and
  the default model is served;
- the Service of knative/base/27-forecaster.yaml, run as Kubernetes would (its args after the forecaster
  image's ENTRYPOINT, Knative's PORT), answers its probes and Krateo's request;
- `finops forecast serve` serves the same, and stops on SIGTERM (as Knative stops a pod) with status 0;
- without the extra (kserve blocked), `finops forecast serve` and `python -m functions.stages.forecaster`
  print one line naming the extra and exit 2.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import stop_process
from forecaster_server import EXTRA_MISSING, infer_body, start_forecaster

from functions.local.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
needs_extra = pytest.mark.skipif(EXTRA_MISSING is not None, reason=EXTRA_MISSING or "")
MAX_SERIES = 64
MAX_BODY = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The server, its model directory laid out as Krateo's TTM modelcar (weights it does not load yet)."""
    if EXTRA_MISSING:
        pytest.skip(EXTRA_MISSING)
    root = tmp_path_factory.mktemp("forecaster")
    weights = root / "models" / "granite-timeseries-ttm-r2" / "1"
    weights.mkdir(parents=True)
    (weights / "model.pt").write_bytes(b"TorchScript archive stand-in")
    port, log = free_port(), root / "log.txt"
    process = start_forecaster(port, log, "--model-dir", str(root / "models"), "--max-series", str(MAX_SERIES),
                               "--max-body-bytes", str(MAX_BODY))
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop_process(process)


def _office(n: int, seed: int, per_day: int = 96) -> list[float]:
    """A daily cycle with noise (plain Python: the module is collected without the extra too)."""
    rng = random.Random(seed)
    return [40 + 30 * math.sin(2 * math.pi * t / per_day) + rng.gauss(0, 2) for t in range(n)]


def _infer(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/forecaster/infer", json=body, timeout=120, **kwargs)


@needs_extra
def test_krateos_ttm_request_is_answered_as_the_runner_reads_it(server: tuple[str, Path]) -> None:
    url, _ = server
    body = {"inputs": [{"name": "past_values", "shape": [1, 512, 1], "datatype": "FP32", "data": [_office(512, 1)]}]}
    answer = _infer(url, body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    first = answer.json()["outputs"][0]
    assert (first["name"], first["shape"], first["datatype"]) == ("forecast_output", [1, 96], "FP32")
    assert len(first["data"]) == 96 and all(isinstance(v, float) and math.isfinite(v) for v in first["data"])
    assert min(first["data"]) > 0 and max(first["data"]) < 100


@needs_extra
def test_a_batch_answers_every_series_as_the_pure_forecast(server: tuple[str, Path]) -> None:
    import numpy as np

    from functions.stages.forecaster import forecast

    url, _ = server
    rows = [_office(400, seed, per_day=96 if seed % 2 else 24) for seed in range(48)]
    answer = _infer(url, {"inputs": [{"name": "past_values", "shape": [48, 400], "datatype": "FP32",
                                      "data": [v for row in rows for v in row]}]})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["forecast_output"]["shape"] == [48, 96]
    served = np.array(outputs["forecast_output"]["data"], dtype=np.float32).reshape(48, 96)
    expected = forecast.handle(np.array(rows, dtype=np.float32))
    assert np.allclose(served, expected.values, rtol=1e-6, atol=1e-4)
    assert outputs["season_length"]["data"] == expected.season_lengths == [24, 96] * 24
    assert outputs["method"]["data"] == expected.methods


@needs_extra
def test_horizon_and_season_parameters_shape_the_answer(server: tuple[str, Path]) -> None:
    url, _ = server
    answer = _infer(url, infer_body([_office(512, 2)], parameters={"horizon": "24", "season_length": "96"}))
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert outputs[0]["shape"] == [1, 24] and len(outputs[0]["data"]) == 24
    assert outputs[1]["data"] == [96]
    auto = _infer(url, infer_body([_office(512, 2, per_day=24)], parameters={"horizon": 10, "season_length": "auto"}))
    assert auto.status_code == 200 and auto.json()["outputs"][1]["data"] == [24]


@needs_extra
def test_gaps_and_variable_lengths_are_answered_without_reading_zeros(server: tuple[str, Path]) -> None:
    url, _ = server
    full = _office(512, 3)
    gapped = list(full)
    for i in [*range(100, 140), *range(300, 305), 511 - 200]:
        gapped[i] = math.nan
    short = _office(200, 4)
    padded = [math.nan] * 312 + short
    answer = _infer(url, infer_body([full, gapped, padded], parameters={"season_length": 96}))
    assert answer.status_code == 200, answer.text
    data = answer.json()["outputs"][0]["data"]
    rows = [data[i * 96:(i + 1) * 96] for i in range(3)]
    assert sum(abs(a - b) for a, b in zip(rows[0], rows[1], strict=True)) / 96 < 2.0, "gaps change little"
    alone = _infer(url, infer_body([short], parameters={"season_length": 96})).json()["outputs"][0]["data"]
    assert rows[2] == pytest.approx(alone, rel=1e-6)


@needs_extra
def test_binary_tensors_are_answered_as_json_ones(server: tuple[str, Path]) -> None:
    """KServe's binary tensor extension (raw FP32 after the JSON header), in and out."""
    url, _ = server
    row = _office(200, 10)
    raw = struct.pack(f"<{len(row)}f", *row)
    head = json.dumps({"inputs": [{"name": "past_values", "shape": [1, 200, 1], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "parameters": {"horizon": 8, "binary_data_output": True}}).encode()
    answer = httpx.post(f"{url}/v2/models/forecaster/infer", content=head + raw, timeout=60,
                        headers={"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 8 * 4
    served = struct.unpack("<8f", answer.content[length: length + 32])
    as_json = _infer(url, infer_body([row], parameters={"horizon": 8})).json()["outputs"][0]["data"]
    assert list(served) == pytest.approx(as_json, rel=1e-6)


def _request(**change: Any) -> dict[str, Any]:
    tensor = {"name": "past_values", "shape": [2, 64, 1], "datatype": "FP32", "data": [_office(64, 5), _office(64, 6)]}
    tensor.update(change)
    return {"inputs": [tensor]}


BAD = {
    "two-channels": (_request(shape=[2, 32, 2]), "past_values.shape", "several channels need a multivariate model"),
    "data-short-of-shape": (_request(shape=[2, 65, 1]), "past_values.data", "needs 130 FP32 values"),
    "text": (_request(datatype="BYTES", data=["a", "b"]), "past_values.datatype", "got BYTES"),
    "two-inputs": ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                               {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}, "inputs", "past_values"),
    "row-without-values": (_request(data=[[None] * 64, _office(64, 7)]), "past_values[0]", "has no observed value"),
    "bad-horizon": ({**_request(), "parameters": {"horizon": "soon"}}, "parameters.horizon", "an integer"),
    "horizon-zero": ({**_request(), "parameters": {"horizon": 0}}, "parameters.horizon", "must be 1.."),
    "not-v2": ({"instances": [[1, 2, 3]]}, "body.inputs", "Field required"),
    "too-many-series": (_request(shape=[MAX_SERIES + 1, 1], data=[1.0] * (MAX_SERIES + 1)), "past_values.shape", "--max-series"),
    "one-dimension": (_request(shape=[64], data=_office(64, 8)), "past_values.shape", "[B, L, 1] or [B, L]"),
}


@needs_extra
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_answers_400_naming_the_field(server: tuple[str, Path], case: str) -> None:
    body, where, why = BAD[case]
    answer = _infer(server[0], body)
    assert answer.status_code == 400, answer.text
    found = answer.json()
    assert found["error"], found
    assert any(e["loc"] == where and why in e["msg"] for e in found["errors"]), found


@needs_extra
def test_a_body_that_is_not_json_answers_400(server: tuple[str, Path]) -> None:
    answer = httpx.post(f"{server[0]}/v2/models/forecaster/infer", content=b'{"inputs": [', timeout=30,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "JSON" in json.dumps(answer.json()), answer.text


@needs_extra
def test_a_body_over_the_limit_answers_413_before_it_is_read(server: tuple[str, Path]) -> None:
    body = json.dumps(_request()).encode() + b" " * MAX_BODY
    answer = httpx.post(f"{server[0]}/v2/models/forecaster/infer", content=body, timeout=30,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "--max-body-bytes" in answer.json()["errors"][0]["msg"], answer.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield json.dumps(_request()).encode()[:-1]
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)
        yield b"}"

    streamed = httpx.post(f"{server[0]}/v2/models/forecaster/infer", content=chunks(), timeout=30,
                          headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text


@needs_extra
def test_an_unknown_model_answers_404(server: tuple[str, Path]) -> None:
    answer = httpx.post(f"{server[0]}/v2/models/granite-timeseries-ttm-r2/infer", json=_request(), timeout=30)
    assert answer.status_code == 404, answer.text


@needs_extra
def test_health_readiness_and_the_model_list(server: tuple[str, Path]) -> None:
    url, _ = server
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{url}/v2/models/forecaster/ready").json() == {"name": "forecaster", "ready": True}
    assert httpx.get(f"{url}/v2/models").json() == {"models": ["forecaster"]}
    metadata = httpx.get(f"{url}/v2/models/forecaster").json()
    assert metadata["inputs"] == [{"name": "past_values", "datatype": "FP32", "shape": [-1, -1, 1]}]
    assert [o["name"] for o in metadata["outputs"]] == ["forecast_output", "season_length", "method"]


@needs_extra
def test_ttm_weights_are_logged_and_the_default_model_is_served(server: tuple[str, Path]) -> None:
    url, log = server
    assert _infer(url, _request()).status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (said,) = [line for line in lines if "TTM" in line["msg"]]
    assert said["level"] == "warning" and "not built yet" in said["msg"]
    assert said["files"] == ["granite-timeseries-ttm-r2/1/model.pt"]


@needs_extra
def test_finops_forecast_serve_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    finops = [sys.executable, "-c", "import sys; from functions.cli import main; sys.exit(main(sys.argv[1:]))",
              "forecast", "serve", "--model-dir", str(tmp_path / "none")]
    process = start_forecaster(port, tmp_path / "log.txt", command=finops)
    try:
        answer = _infer(f"http://127.0.0.1:{port}", infer_body([_office(128, 9)], parameters={"horizon": 12}))
        assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [1, 12]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "log.txt").read_text()[-2000:]
    finally:
        stop_process(process)


def _forecaster_stage() -> list[tuple[str, str]]:
    """The Containerfile's `forecaster` stage: (instruction, argument), continuations joined, comments dropped."""
    text = (ROOT / "Containerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    steps, inside = [], False
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            inside = arg.strip().endswith(" AS forecaster")
        if inside:
            steps.append((op.upper(), arg.strip()))
    return steps


@needs_extra
def test_the_forecaster_service_runs_the_image_as_kubernetes_would(tmp_path: Path) -> None:
    """knative/base/27-forecaster.yaml's `args` after the forecaster image's ENTRYPOINT (Kubernetes replaces
    the image's CMD with them), Knative's PORT; its readiness and liveness probes and Krateo's request answer."""
    stage = _forecaster_stage()
    (entrypoint,) = [json.loads(arg) for op, arg in stage if op == "ENTRYPOINT"]
    assert entrypoint[:3] == ["python", "-m", "functions.stages.forecaster"]
    assert any(op == "USER" and not arg.startswith(("0", "root")) for op, arg in stage)
    (service,) = [d for d in yaml.safe_load_all((ROOT / "knative" / "base" / "27-forecaster.yaml").read_text(encoding="utf-8"))
                  if isinstance(d, dict) and d.get("kind") == "Service"]
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("/finops-forecaster:latest") and "command" not in container
    port = free_port()
    command = [sys.executable, *entrypoint[1:], *container["args"], "--host", "127.0.0.1"]  # loopback here, 0.0.0.0 in a pod
    with (tmp_path / "log.txt").open("wb") as log:
        process = subprocess.Popen(command, env={**os.environ, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "log.txt").read_text()[-2000:]
            try:
                ready = httpx.get(url + container["readinessProbe"]["httpGet"]["path"], timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the forecaster did not answer its readiness probe within 90 s"
                time.sleep(0.2)
        assert ready.status_code == 200
        assert httpx.get(url + container["livenessProbe"]["httpGet"]["path"]).status_code == 200
        answer = httpx.post(f"{url}/v2/models/forecaster/infer", json=infer_body([_office(512, 11)]), timeout=60)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [1, 96]
    finally:
        stop_process(process)


BLOCK_KSERVE = "import sys; sys.modules['kserve'] = None; "


@pytest.mark.parametrize("command", [
    ("from functions.cli import main; sys.exit(main(['forecast', 'serve', '--port', '9']))", "finops forecast serve"),
    ("import runpy; sys.argv = ['x', '--port', '9']; runpy.run_module('functions.stages.forecaster', run_name='__main__')",
     "python -m functions.stages.forecaster"),
], ids=["finops", "python-m"])
def test_without_the_extra_both_entry_points_say_so_and_exit_2(command: tuple[str, str]) -> None:
    code, name = command
    proc = subprocess.run([sys.executable, "-c", BLOCK_KSERVE + code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # kserve blocked here; where the extra is missing altogether, numpy is the first module found missing
    assert re.search(f"`{re.escape(name)}` needs the forecast extra, and (kserve|numpy) is not installed: pip install", proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
