"""A real KServe Open Inference Protocol v2 model server (REST) on 127.0.0.1: seasonal naive forecasts.

`model_server(season, horizon, input_name)` serves POST /v2/models/<model>/infer and GET
/v2/health/ready, /v2/models/<model>. It checks a request as a v2 server does (one input named
`input_name`, datatype FP32, shape [B, L, 1] matching the data, nested or flat) and answers 400 with
{"error": ...} otherwise, else {"model_name", "outputs": [{"name": "forecast_output", "datatype":
"FP32", "shape": [B, horizon, 1], "data": [...]}]} with data flattened row-major. The forecast
repeats each series' last `season` points: y[L + h] = y[L - season + h mod season] (shorter series:
their last point). `statuses`: answers given to the first infer calls instead (e.g. [503] fails the
first call only; [500] * 10 fails ten); `answer`: the body of every good call instead (an odd but
well-formed model); `delay_s`: the time each infer call takes. `seasonal_naive` is the same rule, for the tests' expectations.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loopback_http import Reply, Seen, Server, _Origin, _running

MODEL = "seasonal-naive"
OUTPUT = "forecast_output"


def seasonal_naive(series: Sequence[float], season: int, horizon: int) -> list[float]:
    last = list(series[-season:]) if len(series) >= season else [series[-1]]
    return [float(last[h % len(last)]) for h in range(horizon)]


@dataclass
class ModelServer:
    server: Server
    infer_path: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The InferenceConfig's modelUrl, without its scheme (as Krateo's examples write it)."""
        return self.server.url.removeprefix("http://") + self.infer_path


def _answer(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _flat(data: Any) -> list[Any]:
    return [x for item in data for x in _flat(item)] if isinstance(data, list) else [data]


def _infer(doc: Any, input_name: str, season: int, horizon: int) -> Reply:
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        return _answer(400, {"error": "expected exactly one input tensor"})
    tensor = inputs[0]
    if tensor.get("name") != input_name:
        return _answer(400, {"error": f"unexpected input {tensor.get('name')!r}, expected {input_name!r}"})
    shape, flat = tensor.get("shape"), _flat(tensor.get("data"))
    if tensor.get("datatype") != "FP32" or not (isinstance(shape, list) and len(shape) == 3 and shape[2] == 1):
        return _answer(400, {"error": f"expected FP32 of shape [B, L, 1], got {tensor.get('datatype')} {shape}"})
    batch, length = shape[0], shape[1]
    if batch * length != len(flat) or not all(isinstance(x, int | float) for x in flat) or length < 1:
        return _answer(400, {"error": f"data does not match shape {shape}"})
    out = [v for b in range(batch) for v in seasonal_naive(flat[b * length:(b + 1) * length], season, horizon)]
    return _answer(200, {"model_name": MODEL, "outputs": [
        {"name": OUTPUT, "datatype": "FP32", "shape": [batch, horizon, 1], "data": out}]})


class _Model(_Origin):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stopped waiting (a run's time limit) is not an error of the model's."""
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


@contextmanager
def model_server(season: int = 4, horizon: int = 8, input_name: str = "past_values", statuses: Sequence[int] = (),
                 answer: dict[str, Any] | None = None, delay_s: float = 0.0) -> Iterator[ModelServer]:
    path = f"/v2/models/{MODEL}/infer"
    pending = list(statuses)
    lock = threading.Lock()
    holder: list[ModelServer] = []

    def route(seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path in ("/v2/health/ready", f"/v2/models/{MODEL}"):
            return _answer(200, {"name": MODEL, "ready": True})
        if seen.method != "POST" or seen.path != path:
            return _answer(404, {"error": f"no route {seen.method} {seen.path}"})
        try:
            doc = json.loads(seen.body)
        except ValueError:
            doc = None
        with lock:
            holder[0].calls.append({"headers": seen.headers, "body": doc})
            status = pending.pop(0) if pending else None
        time.sleep(delay_s)
        if status is not None:
            return _answer(status, {"error": f"model unavailable (HTTP {status})"})
        reply = _infer(doc, input_name, season, horizon)
        return _answer(200, answer) if answer is not None and reply.status == 200 else reply

    origin = _Model(route)
    port = origin.server_address[1]
    with _running(origin):
        holder.append(ModelServer(Server(f"http://127.0.0.1:{port}", origin.seen, port), path))
        yield holder[0]
