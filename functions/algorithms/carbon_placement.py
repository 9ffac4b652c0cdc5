"""Carbon-aware day-1 placement: which allowed region, and when, to start a job.

Krateo documents day-1 placement (krateo-v2-docs, docs/20-key-concepts/30-kcf/) but ships no code or
decision rule; this module fixes it:

- a candidate is (region, start) with the region in ``allowed_regions`` (never another), ``start`` on
  the series' grid (multiples of ``step`` since the Unix epoch, hourly by default), ``start >= now``
  rounded up to the grid, and ``start + duration <= deadline``;
- its score is the mean intensity of the ``ceil(duration / step)`` grid points in
  ``[start, start + duration)``; a window missing any point is skipped (no guessing inside the
  decision), and points off the grid are ignored;
- the lowest score wins; ties go to the earliest start, then to the earlier region in
  ``allowed_regions`` (the caller's preference order);
- ``baseline_intensity`` is the score of starting at the first grid point >= now in the first allowed
  region (or the next allowed region with data for that window; the chosen score when none has), so
  ``baseline - mean`` is the saving the decision claims;
- nothing fits (deadline too close, no data) -> None; the caller then applies its safe default (first
  allowed region, start now) and says so.

``seasonal_naive_forecast`` is the fallback when no model forecast exists: each future point repeats
the value one season (a day) earlier, or the last season that has it.
Pure: no I/O, all times UTC-aware datetimes; O(points) per region via prefix sums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice


@dataclass(frozen=True)
class Placement:
    """The chosen region and start, its mean intensity, and the start-now baseline it beats."""

    region: str
    start: datetime
    mean_intensity: float
    baseline_intensity: float
    source: str
    message: str

    @property
    def saving(self) -> float:
        """Intensity avoided per unit of energy versus starting now in the baseline region."""
        return self.baseline_intensity - self.mean_intensity


def _epoch(value: datetime, name: str) -> float:
    if value.tzinfo is None:  # a naive time would silently be read as local time
        raise ValueError(f"{name}: must be timezone aware (UTC)")
    return value.timestamp()


def _step_seconds(step: timedelta) -> int:
    seconds = step.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"step: must be a positive whole number of seconds, got {step}")
    return int(seconds)


def _grid(points: Sequence[tuple[datetime, float]], first: int, size: int, step_s: int,
          region: str) -> list[float | None]:
    """The region's values at grid ordinals first .. first+size-1 (None where missing)."""
    values: list[float | None] = [None] * size
    for when, value in points:
        seconds = _epoch(when, f"series[{region!r}] timestamp")
        ordinal, rest = divmod(seconds, step_s)
        if rest:
            continue  # off the grid
        index = int(ordinal) - first
        if 0 <= index < size and math.isfinite(value):
            values[index] = float(value)
    return values


def _window_means(values: Sequence[float | None], width: int) -> list[float | None]:
    """Mean of every complete window of `width` consecutive values, by start index (prefix sums)."""
    total = [0.0]
    missing = [0]
    for value in values:
        total.append(total[-1] + (value if value is not None else 0.0))
        missing.append(missing[-1] + (value is None))
    return [(total[i + width] - total[i]) / width if missing[i + width] == missing[i] else None
            for i in range(len(values) - width + 1)]


def choose(series: Mapping[str, Sequence[tuple[datetime, float]]], allowed_regions: Sequence[str],
           duration: timedelta, now: datetime, deadline: datetime, *, source: str = "forecast",
           step: timedelta = timedelta(hours=1)) -> Placement | None:
    """The (region, start) with the lowest mean intensity over the job (rules in the module docstring)."""
    step_s = _step_seconds(step)
    duration_s = duration.total_seconds()
    if duration_s <= 0:
        raise ValueError(f"duration: must be positive, got {duration}")
    width = math.ceil(duration_s / step_s)
    first = math.ceil(_epoch(now, "now") / step_s)
    last = math.floor((_epoch(deadline, "deadline") - duration_s) / step_s)
    if last < first:
        return None
    size = last - first + width
    regions = list(dict.fromkeys(allowed_regions))
    means: dict[str, list[float | None]] = {}
    grids: dict[str, list[float | None]] = {}
    best: tuple[float, int, int] | None = None  # (mean, start index, region rank)
    for rank, region in enumerate(regions):
        points = series.get(region)
        if not points:
            continue
        grids[region] = _grid(points, first, size, step_s, region)
        means[region] = _window_means(grids[region], width)
        for index, mean in enumerate(means[region]):
            if mean is not None and (best is None or (mean, index, rank) < best):
                best = (mean, index, rank)
    if best is None:
        return None
    _, index, rank = best
    region = regions[rank]

    def exact(name: str, at: int) -> float:
        return math.fsum(v for v in islice(grids[name], at, at + width) if v is not None) / width

    mean = exact(region, index)
    baseline_region = next((r for r in regions if r in means and means[r][0] is not None), region)
    baseline = exact(baseline_region, 0) if baseline_region in means and means[baseline_region][0] is not None \
        else mean
    start = datetime.fromtimestamp((first + index) * step_s, UTC)
    message = (f"mean {mean:.1f} gCO2/kWh over {width} x {step}, vs {baseline:.1f} if started now in "
               f"{baseline_region} ({source})")
    return Placement(region=region, start=start, mean_intensity=mean, baseline_intensity=baseline,
                     source=source, message=message)


def seasonal_naive_forecast(history: Sequence[tuple[datetime, float]], now: datetime, horizon: timedelta,
                            season: timedelta = timedelta(days=1), *,
                            step: timedelta | None = None) -> list[tuple[datetime, float]]:
    """"History when no forecast": the value at t is the last observed value at t - k * season.

    Only points before ``now`` are used. Forecast times continue the history's grid (``step``, by default
    the median gap of the history) from the first grid point >= now up to ``now + horizon``
    (exclusive); a time with no observation any whole number of seasons earlier is left out.
    """
    now_s = _epoch(now, "now")
    season_s = season.total_seconds()
    if season_s <= 0:
        raise ValueError(f"season: must be positive, got {season}")
    known = sorted((round(_epoch(t, "history timestamp")), float(v)) for t, v in history
                   if _epoch(t, "history timestamp") < now_s and math.isfinite(v))
    if not known:
        return []
    if step is not None:
        step_s = _step_seconds(step)
    else:
        gaps = sorted(b[0] - a[0] for a, b in zip(known, known[1:], strict=False) if b[0] > a[0])
        step_s = gaps[len(gaps) // 2] if gaps else round(season_s)
    by_time = dict(known)
    earliest, anchor = known[0][0], known[-1][0]
    t = anchor + math.ceil((now_s - anchor) / step_s) * step_s
    end = now_s + horizon.total_seconds()
    out: list[tuple[datetime, float]] = []
    season_whole = round(season_s)
    while t < end:
        past = t - season_whole
        while past >= earliest and past not in by_time:
            past -= season_whole
        if past >= earliest:
            out.append((datetime.fromtimestamp(t, UTC), by_time[past]))
        t += step_s
    return out
