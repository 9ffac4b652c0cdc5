"""functions-framework source for tests: the dbhandler target defined the way functions/main.py does."""

from __future__ import annotations

from typing import Any

import functions_framework


@functions_framework.http
def dbhandler(request: Any) -> Any:
    from functions.stages.dbhandler import router

    return router.handle(request)
