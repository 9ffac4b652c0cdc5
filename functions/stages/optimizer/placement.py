"""Day-1 carbon-aware placement: the region and start a CREATE admission proposes to the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.algorithms import carbon_placement
from functions.errors import FinopsError
from functions.models import optimizer as model
from functions.stages.optimizer.deps import Deps


def place(wanted: model.PlacementRequest, deps: Deps) -> dict[str, Any]:
    """Region and start with the lowest forecast intensity; history (seasonal naive) when no fresh
    forecast covers the window; the first allowed region, now, when there is no data at all."""
    now = deps.now()
    regions = wanted.allowed_regions
    tried: list[str] = []
    if deps.carbon is not None:
        try:
            series = deps.carbon.forecast(regions, now - timedelta(hours=1), wanted.deadline)
            chosen = carbon_placement.choose(series, regions, wanted.duration, now, wanted.deadline, source="forecast")
            if chosen is not None:
                return _placement_dict(chosen)
            tried.append("no forecast covers the window")
            history = deps.carbon.history(regions, now - timedelta(days=7), now)
            horizon = wanted.deadline - now
            naive = {r: carbon_placement.seasonal_naive_forecast(h, now, horizon) for r, h in history.items() if h}
            chosen = carbon_placement.choose(naive, regions, wanted.duration, now, wanted.deadline, source="history")
            if chosen is not None:
                return _placement_dict(chosen)
            tried.append("no history either")
        except FinopsError as exc:
            tried.append(exc.message)
    else:
        tried.append("no carbon data configured (FINOPS_CARBON_DB_URL)")
    message = f"default placement: first allowed region, start now ({'; '.join(tried)})"
    return {"region": regions[0], "start": _rfc3339(now), "mean_intensity": None, "baseline_intensity": None,
            "source": "default", "message": message}


def _placement_dict(p: carbon_placement.Placement) -> dict[str, Any]:
    return {"region": p.region, "start": _rfc3339(p.start), "mean_intensity": round(p.mean_intensity, 3),
            "baseline_intensity": round(p.baseline_intensity, 3), "source": p.source, "message": p.message}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
