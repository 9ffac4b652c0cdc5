"""`python -m functions.stages.forecaster --model-dir DIR --port P`: the forecaster's KServe model server
(the forecaster image's command). Without the `forecast` extra: one line saying so, exit status 2."""

from __future__ import annotations

import sys

from functions.stages.forecaster import flags


def run(argv: list[str] | None = None) -> int:
    try:
        from functions.stages.forecaster import server
    except ModuleNotFoundError as exc:
        message = flags.missing_extra(exc, "python -m functions.stages.forecaster")
        if message is None:
            raise
        print(f"forecaster: error: {message}", file=sys.stderr)
        return 2
    return server.main(argv)


if __name__ == "__main__":
    sys.exit(run())
