"""The forecaster server's command-line flags, shared by `python -m functions.stages.forecaster` and
`finops forecast serve`: this module imports nothing heavy, so `finops` builds its parser without
the `forecast` extra and says what is missing only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXTRA_MODULES", "ServeOptions", "add_arguments", "missing_extra", "options"]

MODEL_DIR = Path("/mnt/models")
"""Where KServe's storage initializer puts an InferenceService's storageUri (and a modelcar its files)."""


EXTRA_MODULES = frozenset({"kserve", "statsforecast", "numpy", "fastapi", "pandas", "scipy", "statsmodels", "coreforecast"})
"""Top-level modules that come with the `forecast` extra (pyproject's optional dependencies)."""


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """The one-line message for `command` when `exc` is a module of the `forecast` extra missing, else None
    (a missing module of ours is a bug, not an installation choice)."""
    name = str(exc.name or "")
    if name.split(".")[0] not in EXTRA_MODULES:
        return None
    return (f"`{command}` needs the forecast extra, and {name} is not installed: "
            "pip install 'finops-functions[forecast]' (or use the forecaster image, Containerfile --target forecaster)")


@dataclass(frozen=True)
class ServeOptions:
    """What the server is started with."""

    model_dir: Path = MODEL_DIR
    host: str = "0.0.0.0"
    port: int = 8080
    model_name: str = "forecaster"
    horizon: int = 96
    season_length: int | None = None
    max_series: int = 4096
    max_length: int = 8192
    max_body_bytes: int = 64 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's flags on `parser` (defaults: ServeOptions; the port: $PORT, as Knative sets it)."""
    d = ServeOptions()
    parser.add_argument("--model-dir", type=Path, default=d.model_dir,
                        help=f"model files (KServe's storageUri lands in {MODEL_DIR}); TTM weights there would select TTM, "
                             "which is not built yet: the default statistical model is served (default %(default)s)")
    parser.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or d.port),
                        help="HTTP port (default $PORT, else %(default)s)")
    parser.add_argument("--model-name", default=d.model_name,
                        help="the model's name in /v2/models/<name>/infer (default %(default)s)")
    parser.add_argument("--horizon", type=int, default=d.horizon,
                        help="steps forecast when a request names no `horizon` parameter (default %(default)s, as TTM 512-96)")
    parser.add_argument("--season-length", type=int, default=d.season_length,
                        help="season when a request names no `season_length` parameter (default: derived per series)")
    parser.add_argument("--max-series", type=int, default=d.max_series, help="most series in one request (default %(default)s)")
    parser.add_argument("--max-length", type=int, default=d.max_length, help="most points per series (default %(default)s)")
    parser.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                        help="largest request body, refused with 413 before it is read (default %(default)s)")


def options(args: argparse.Namespace) -> ServeOptions:
    """The parsed flags as ServeOptions."""
    return ServeOptions(model_dir=args.model_dir, host=args.host, port=args.port, model_name=args.model_name,
                        horizon=args.horizon, season_length=args.season_length, max_series=args.max_series,
                        max_length=args.max_length, max_body_bytes=args.max_body_bytes)
