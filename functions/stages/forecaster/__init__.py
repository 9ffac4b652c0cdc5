"""Forecaster: a KServe model server (Open Inference Protocol v2, REST) that Krateo's TTM runner and our
inference runner call as they would call Krateo's Triton-served TTM; the optional `forecast` extra.

Trigger:     POST /v2/models/<name>/infer (the model's URL in an InferenceConfig).
Input:       `past_values` FP32 [B, L, 1] (Krateo's TTM tensor) or [B, L]; NaN or null = missing; request
             parameters `horizon` (default 96) and `season_length` (default derived per series).
Output:      `forecast_output` FP32 [B, H] first (Krateo's runner reads outputs[0].data, flat), then
             `season_length` INT32 [B] and `method` BYTES [B].
Side effects: none: the model is loaded once per process from --model-dir (KServe's /mnt/models).
Idempotency: the same request gives the same forecast.

- `forecast`: the forecasting itself (shapes, gaps, scaling, season, the model and its guard), no server.
- `server`: the `kserve.Model` and its `ModelServer`; `python -m functions.stages.forecaster`.
- `flags`: the server's command-line flags, shared with `finops forecast serve` (imports nothing heavy).

Only this package imports kserve (and, with TTM, torch): the function image does not install them.
"""

__all__ = ["flags", "forecast", "server"]
