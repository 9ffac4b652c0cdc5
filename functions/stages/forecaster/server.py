"""The forecaster as a KServe model server: Open Inference Protocol v2 over REST, served by KServe's
`ModelServer` (uvicorn + FastAPI), so Krateo's runner, KServe's clients and our inference runner call
it as they call Triton.

Routes (KServe's): POST /v2/models/<name>/infer, GET /v2/models/<name>/ready, GET /v2/models/<name>
(metadata), GET /v2/health/live, GET /v2/health/ready, GET /v2/models (the names served), GET /metrics.
Bad input answers 400 with the project's error body (`{"error", "errors": [{"loc", "msg"}]}`, every
bad field named), whether our checks or FastAPI's request schema found it; a body over
--max-body-bytes answers 413 before it is read; anything unexpected answers 500 without its
details (the traceback is logged).

The request: the input named `past_values` (or the only input, whatever its name: an InferenceConfig
may name it otherwise), any numeric datatype (Krateo sends FP32), data nested or flat as v2 allows,
`null` (or NaN) for a missing value; request parameters `horizon` and `season_length` (integers, or
strings of them as Krateo's parameters are; `season_length` "auto" = derived). The response:
`forecast_output` FP32 [B, H] first, `season_length` INT32 [B], `method` BYTES [B].

The model: `--model-dir` (KServe's /mnt/models) is looked at once. TTM weights there (a TorchScript
`model.pt` as Krateo's modelcar holds, or a Hugging Face TinyTimeMixer checkpoint) will select TTM;
that model is not built yet, so today it is logged and the default statistical model is served. A
TTM model is a `forecast.Model`: `_select_model` is where it plugs in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from functions.errors import FieldError, FinopsError, InvalidInput, TooLarge, answered, field_errors
from functions.logs import get_logger
from functions.stages.forecaster import flags, forecast

_argv, sys.argv = sys.argv, sys.argv[:1]  # kserve.model_server parses sys.argv when imported: our flags are not its
try:
    import kserve
    from fastapi.exceptions import RequestValidationError
    from kserve import model_server as kserve_app
    from starlette.requests import Request
    from starlette.responses import JSONResponse
finally:
    sys.argv = _argv

__all__ = ["INPUT", "OUTPUT", "ForecasterModel", "main", "serve"]

INPUT = "past_values"
"""The input's name in Krateo's TTM export and its InferenceConfigs (`modelInputName`)."""
OUTPUT = "forecast_output"
"""The output's name in Krateo's Triton config for TTM."""
NUMERIC = frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
TTM_FILES = ("model.pt", "*.safetensors", "pytorch_model.bin")
_log = get_logger("forecaster")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ForecasterModel(kserve.Model):  # type: ignore[misc]  # kserve ships no type hints
    """One forecasting model under one name: decode the v2 request, forecast off the event loop, encode."""

    def __init__(self, options: flags.ServeOptions) -> None:
        super().__init__(options.model_name)
        self.options = options
        self.defaults = forecast.Options(options.horizon, options.season_length).checked()
        self.model: forecast.Model = forecast.statistical
        self.load()

    def load(self) -> bool:
        self.model = _select_model(self.options.model_dir)
        self.ready = True
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": INPUT, "datatype": "FP32", "shape": [-1, -1, 1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, -1]},
                {"name": "season_length", "datatype": "INT32", "shape": [-1]},
                {"name": "method", "datatype": "BYTES", "shape": [-1]}]

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        """The forecast of every series; the work runs in a thread, so health probes answer meanwhile."""
        if not isinstance(payload, kserve.InferRequest):
            raise InvalidInput("the forecaster speaks the v2 protocol only: POST /v2/models/<name>/infer",
                               [FieldError("body", "a v2 inference request ({\"inputs\": [...]})")])
        try:
            past, options = self._decode(payload)
            result = await asyncio.to_thread(forecast.handle, past, options, self.model)
        except FinopsError:
            raise
        except Exception as exc:  # answered 500 by the one table, its traceback logged, not sent
            raise FinopsError("the forecast failed") from exc
        return _encode(payload, self.name, result)

    def _decode(self, request: Any) -> tuple[np.ndarray, forecast.Options]:
        tensor = _input(request.inputs)
        shape = list(tensor.shape)
        errors = []
        if tensor.datatype not in NUMERIC:
            errors.append(FieldError(f"{tensor.name}.datatype", f"a numeric datatype (FP32), got {tensor.datatype}"))
        if len(shape) not in (2, 3) or not all(isinstance(d, int) and d >= 1 for d in shape):
            errors.append(FieldError(f"{tensor.name}.shape", f"[B, L, 1] or [B, L], every dimension >= 1, got {shape}"))
        elif shape[0] > self.options.max_series or shape[1] > self.options.max_length:
            errors.append(FieldError(f"{tensor.name}.shape", f"at most {self.options.max_series} series of "
                                     f"{self.options.max_length} points (--max-series, --max-length), got {shape}"))
        options = _options(request.parameters, self.defaults, errors)
        if errors:
            raise InvalidInput("invalid inference request", errors)
        try:
            values = tensor.as_numpy()
        except (ValueError, TypeError) as exc:
            count = int(np.prod(shape))
            raise InvalidInput("invalid inference request", [FieldError(
                f"{tensor.name}.data", f"shape {shape} needs {count} {tensor.datatype} values (null for a missing one), "
                                       "nested as the shape or flat")]) from exc
        return values, options


def _input(inputs: list[Any]) -> Any:
    named = [t for t in inputs if t.name == INPUT]
    if len(named) == 1 or len(inputs) == 1:
        return named[0] if named else inputs[0]
    raise InvalidInput("invalid inference request", [FieldError(
        "inputs", f"one input named {INPUT!r} (or a single input), got {[t.name for t in inputs]}")])


def _options(parameters: Any, defaults: forecast.Options, errors: list[FieldError]) -> forecast.Options:
    """The request's `horizon` and `season_length` over the server's defaults; bad ones go to `errors`."""
    params = dict(parameters or {})
    horizon = _integer(params, "horizon", errors)
    season: int | None = defaults.season_length
    if str(params.get("season_length", "")).strip().lower() == "auto":
        season = None
    elif "season_length" in params:
        season = _integer(params, "season_length", errors)
    chosen = forecast.Options(horizon if horizon is not None else defaults.horizon, season)
    try:
        return chosen.checked()
    except InvalidInput as exc:
        errors.extend(FieldError(f"parameters.{e.loc}", e.msg) for e in exc.errors)
        return defaults


def _integer(params: dict[str, Any], name: str, errors: list[FieldError]) -> int | None:
    if name not in params:
        return None
    value = params[name]
    text = str(value).strip()
    if not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    if isinstance(value, str) and text.lstrip("+-").isdigit():
        return int(text)
    errors.append(FieldError(f"parameters.{name}", f"an integer, got {value!r}"))
    return None


def _encode(request: Any, model_name: str, result: forecast.Forecast) -> Any:
    series, horizon = result.values.shape
    outputs = [
        kserve.InferOutput(OUTPUT, [series, horizon], "FP32", data=result.values),
        kserve.InferOutput("season_length", [series], "INT32", data=np.asarray(result.season_lengths, dtype=np.int32)),
        kserve.InferOutput("method", [series], "BYTES", data=np.asarray(result.methods, dtype=np.object_)),
    ]
    return kserve.InferResponse(response_id=request.id or uuid.uuid4().hex, model_name=model_name, infer_outputs=outputs,
                                use_binary_outputs=request.use_binary_outputs, requested_outputs=request.request_outputs)


def _select_model(model_dir: Path) -> forecast.Model:
    """The model the directory asks for: TTM weights would select TTM (not built yet: logged), else the default."""
    found = _ttm_files(model_dir)
    if found:
        _log.warning("TTM weights found, but the TTM model is not built yet: serving the default statistical model",
                     extra={"model_dir": str(model_dir), "files": found[:5]})
    else:
        _log.info("serving the default statistical model", extra={"model_dir": str(model_dir),
                                                                  "model_dir_exists": model_dir.is_dir()})
    return forecast.statistical


def _ttm_files(model_dir: Path, limit: int = 2000) -> list[str]:
    """Files under `model_dir` that hold TTM weights: TorchScript, safetensors, or a TinyTimeMixer config."""
    if not model_dir.is_dir():
        return []
    found, seen = [], 0
    for path in sorted(model_dir.rglob("*")):
        seen += 1
        if seen > limit:
            break
        if not path.is_file():
            continue
        if any(path.match(p) for p in TTM_FILES) or (path.name == "config.json" and _is_ttm_config(path)):
            found.append(str(path.relative_to(model_dir)))
    return found


def _is_ttm_config(path: Path) -> bool:
    try:
        config = json.loads(path.read_text(encoding="utf-8")[:100_000])
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "tinytimemixer" in str(config.get("model_type", "")).lower()


class _BodyLimit:
    """Refuses a request body over `limit` bytes with 413: by its Content-Length before reading it, or,
    when it declares none, once that many bytes streamed in (the app is told the client left, and
    whatever it answers to that is replaced by the 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        read, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal read, over
            if not over:
                message = await receive()
                read += len(message.get("body", b""))
                over = read > self.limit
                if not over:
                    return message
            return {"type": "http.disconnect"}

        async def unless_over(message: Message) -> None:
            nonlocal started
            if not over:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        got = answered(TooLarge(self.limit, "--max-body-bytes"), "forecaster", path=scope.get("path"))
        await JSONResponse(got.body, got.status, got.headers)(scope, receive, send)


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    """Our errors through the project's one table (status, body, headers), logged as every entry logs them."""
    got = answered(exc, "forecaster", path=request.url.path)
    return JSONResponse(got.body, got.status, got.headers)


async def _malformed(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's schema errors (a body that is no v2 request) as our 400, every bad field named."""
    errors = []
    for e in field_errors(exc, "body") if isinstance(exc, RequestValidationError) else []:
        parts = e.loc.split(".")
        if parts[1:2] == ["bytes"]:
            continue  # KServe's route also takes raw bytes (binary tensors): not what a JSON body missed
        errors.append(FieldError(".".join(p for p in parts if p != "InferenceRequest"), e.msg))
    return await _answer(request, InvalidInput("invalid inference request: not a v2 inference request body", errors))


class _Server(kserve.ModelServer):  # type: ignore[misc]
    """KServe's ModelServer listening on `host` (its REST server binds 0.0.0.0 whatever it is told)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    async def _serve(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        await super()._serve()


def serve(options: flags.ServeOptions) -> int:
    """Serve until stopped (SIGTERM, as Knative stops a pod). Bad options: InvalidInput, naming each."""
    _check(options)
    model = ForecasterModel(options)
    app = kserve_app.app
    app.add_exception_handler(FinopsError, _answer)
    app.add_exception_handler(RequestValidationError, _malformed)
    app.add_middleware(_BodyLimit, limit=options.max_body_bytes)
    _log.info("forecaster listening", extra={"host": options.host, "port": options.port, "model": options.model_name})
    _Server(options.host, http_port=options.port, enable_grpc=False).start([model])
    return 0


def _check(options: flags.ServeOptions) -> None:
    errors = [FieldError(f"--{name.replace('_', '-')}", "must be >= 1") for name in ("max_series", "max_length", "max_body_bytes")
              if getattr(options, name) < 1]
    if not 0 < options.port < 65536:
        errors.append(FieldError("--port", f"must be 1..65535, got {options.port}"))
    if not options.model_name or "/" in options.model_name:
        errors.append(FieldError("--model-name", "a non-empty name without '/'"))
    try:
        forecast.Options(options.horizon, options.season_length).checked()
    except InvalidInput as exc:
        errors.extend(FieldError(f"--{e.loc.replace('_', '-')}", e.msg) for e in exc.errors)
    if errors:
        raise InvalidInput("invalid forecaster options", errors)


def main(argv: list[str] | None = None) -> int:
    """`python -m functions.stages.forecaster [flags]`; bad flags print one line each and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m functions.stages.forecaster",
                                     description="The forecaster: a KServe v2 model server.")
    flags.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(flags.options(args))
    except InvalidInput as exc:
        print(f"forecaster: error: {exc.message}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err.loc}: {err.msg}", file=sys.stderr)
        return 2
