"""The forecaster: accuracy of the default model against seasonal naive and the candidates it was chosen
from, and forecasts per second served over HTTP against the raw model call.

Accuracy: the series of tests/forecast_series.py (`cases(seed)` for FINOPS_BENCH_FORECAST_SEEDS, default
0 and 1: 15-minute office CPU, hourly weekly cycles, growth, a resize, flat, random walk, spikes, half
with gaps; 512 points, the next 96 held back) and, for seed 0, the carbon-intensity regions. MASE =
MAE on the held-back window / the history's in-sample seasonal naive MAE (true season). Reported: the
default (`forecast.handle`: derived season, the backtest guard), seasonal naive (last season repeated,
the baseline), and each candidate alone (gaps filled the same way, the true season, no guard):
SeasonalWindowAverage(3), DynamicOptimizedTheta, AutoTheta, MSTL, AutoETS; per family too, with ms per
series. accuracy_ratio = default MASE / seasonal naive MASE (below 1 = better than seasonal naive).

Throughput: a batch of B series (L = 512, Krateo's [B, 512, 1] FP32 request as JSON) for B in
FINOPS_BENCH_FORECAST_BATCHES (default 1,64,1024): `served` = POST /v2/models/forecaster/infer to the
real server (`python -m functions.stages.forecaster`, its own process) from this process, `raw` =
`forecast.handle` on the same batch here; forecasts/s each (best of the runs: 20, 3 and 1 by size).
ratio = served / raw per batch (target >= 0.5 at 1024; floor asserted there); one warm-up call of each
before the first batch. Writes
.bench/forecaster.json and prints it.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from forecaster_server import EXTRA_MISSING, infer_body, start_forecaster

if EXTRA_MISSING:
    pytest.skip(EXTRA_MISSING, allow_module_level=True)

import numpy as np  # noqa: E402
from dbhandler_server import stop_process  # noqa: E402
from forecast_series import Case, carbon_cases, cases, mase, seasonal_naive  # noqa: E402

from functions.local.supervisor import free_port  # noqa: E402
from functions.stages.forecaster import forecast  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SEEDS = [int(s) for s in os.environ.get("FINOPS_BENCH_FORECAST_SEEDS", "0,1").split(",")]
BATCHES = [int(b) for b in os.environ.get("FINOPS_BENCH_FORECAST_BATCHES", "1,64,1024").split(",")]
H = 96


def _family(case: Case) -> str:
    return "carbon" if case.name.startswith("carbon") else case.name.rsplit("-", 1)[0].removesuffix("-gaps")


def _candidates() -> dict[str, Callable[[int], Any]]:
    from statsforecast.models import MSTL, AutoETS, AutoTheta, DynamicOptimizedTheta, SeasonalWindowAverage

    return {"window_average_3": lambda m: SeasonalWindowAverage(season_length=m, window_size=3),
            "dynamic_optimized_theta": lambda m: DynamicOptimizedTheta(season_length=m),
            "auto_theta": lambda m: AutoTheta(season_length=m),
            "mstl": lambda m: MSTL(season_length=m),
            "auto_ets": lambda m: AutoETS(season_length=m)}


def _alone(make: Callable[[int], Any], case: Case) -> np.ndarray:
    y = forecast.fill_gaps(case.history, case.season)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(make(case.season).forecast(y=y, h=H)["mean"], dtype=np.float64)


def _scores(series: list[Case], forecasts: list[np.ndarray], seconds: float) -> dict[str, Any]:
    values = np.array([mase(f, c) for f, c in zip(forecasts, series, strict=True)])
    families = sorted({_family(c) for c in series})
    return {"mase": round(float(values.mean()), 4), "ms_per_series": round(1000 * seconds / len(series), 2),
            "by_family": {f: round(float(values[[_family(c) == f for c in series]].mean()), 4) for f in families}}


def accuracy() -> dict[str, Any]:
    series = [c for seed in SEEDS for c in cases(seed=seed, per_family=6)] + (carbon_cases() if 0 in SEEDS else [])
    out: dict[str, Any] = {"series": len(series), "seeds": SEEDS, "horizon": H}
    started = time.perf_counter()
    got = forecast.handle(np.stack([c.history for c in series]))
    out["default"] = _scores(series, list(got.values), time.perf_counter() - started)
    out["default"]["kept_model"] = sum(m == "window-average+theta" for m in got.methods)
    out["default"]["seasonal_naive_by_backtest"] = sum(m.startswith("seasonal-naive") for m in got.methods)
    out["seasonal_naive"] = _scores(series, [seasonal_naive(c, H) for c in series], 0.0)
    for name, make in _candidates().items():
        started = time.perf_counter()
        forecasts = [_alone(make, c) for c in series]
        out[name] = _scores(series, forecasts, time.perf_counter() - started)
    naive = out["seasonal_naive"]
    for name in ("default", *_candidates()):
        out[name]["vs_seasonal_naive"] = round(out[name]["mase"] / naive["mase"], 4)
        out[name]["worst_family_vs_seasonal_naive"] = round(
            max(v / naive["by_family"][f] for f, v in out[name]["by_family"].items()), 4)
    out["accuracy_ratio"] = out["default"]["vs_seasonal_naive"]
    return out


def _best_rate(call: Callable[[], None], series: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return series / best


def throughput(tmp_path: Path) -> dict[str, Any]:
    pool = [c.history for seed in SEEDS for c in cases(seed=seed, per_family=6)]
    port = free_port()
    server = start_forecaster(port, tmp_path / "forecaster.log", "--model-dir", str(tmp_path / "none"),
                              "--max-series", str(max(BATCHES)))
    out: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=3600) as client:
            for batch in BATCHES:
                rows = np.stack([pool[i % len(pool)] for i in range(batch)]).astype(np.float32)
                body = json.dumps(infer_body(rows.tolist())).encode()
                runs = 20 if batch == 1 else 3 if batch <= 64 else 1

                def served(body: bytes = body, batch: int = batch) -> None:
                    answer = client.post(f"http://127.0.0.1:{port}/v2/models/forecaster/infer", content=body,
                                         headers={"Content-Type": "application/json"})
                    assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [batch, H], answer.text[:500]

                def raw(rows: np.ndarray = rows) -> None:
                    assert forecast.handle(rows[:, :, None]).values.shape == (len(rows), H)

                if batch == BATCHES[0]:
                    served()  # warm-up: the server's first request, and this process's first forecast
                    raw()
                served_rate, raw_rate = _best_rate(served, batch, runs), _best_rate(raw, batch, runs)
                out[str(batch)] = {"request_bytes": len(body), "runs": runs,
                                   "served_forecasts_per_s": round(served_rate, 2), "raw_forecasts_per_s": round(raw_rate, 2),
                                   "ratio": round(served_rate / raw_rate, 3)}
    finally:
        stop_process(server)
    return out


def test_forecaster_accuracy_and_throughput(tmp_path: Path) -> None:
    result = {"accuracy": accuracy(), "throughput": throughput(tmp_path)}
    (REPO / ".bench").mkdir(exist_ok=True)
    (REPO / ".bench" / "forecaster.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    assert result["accuracy"]["accuracy_ratio"] < 1.0, "the default must beat seasonal naive"
    if "1024" in result["throughput"]:
        assert result["throughput"]["1024"]["ratio"] >= 0.5
