"""The moving-window optimizer: a daily low-usage window and how much a VM can shrink in it.

Two modes with the same output contract (Krateo's moving-window microservice object, read by its policy
and frontends:
``{"resourceid", "metricname", "unit", "optimization": {"from", "to", "resourceDelta"}}``):

``legacy`` reproduces Krateo's `cyclic` notebook algorithm (finops-database-handler c8b606d/765ff73)
step by step, quirks included, because the 2025 frontends display exactly its semantics:

- a 12-sample forward moving average (``TIME_GRANULARITY = 5`` minutes, counted in samples, so it
  spans 3 hours of 15-minute Azure data), always divided by 12 (the last 11 points are biased low);
- ``avg_all``, per UTC hour ``usage`` (mean of the moving averages above ``avg_all``) and ``peak``
  (max; -1 without samples); ``room[h] = int(min(100 - usage, 100 - peak))`` when both are > 0, else 0
  (an hour without samples gets 100);
- the longest run of hours whose room is within ±1 of the run's first hour, where only the run
  starting at hour 0 counts its first hour, the run still open at hour 23 is never compared, and
  only a best run starting at hour 0 wraps backwards over midnight;
- ``from = "H:00"``, ``to = "H:00"`` (no zero padding), ``resourceDelta = -room[first hour]``.

Moving-average sums are added left to right like the notebook, so they are bit-identical; ``avg_all``
is ``math.fsum``/n where the notebook used numpy's pairwise sum (it only decides which moving
averages feed ``usage``, which cannot change ``room`` except in a last-ulp tie).

``fixed`` keeps the contract and fixes the legacy algorithm's defects (deliberate differences):

1. the moving-average window is one hour of samples whatever the sample interval (the interval is
   the median timestamp gap unless given): 15-minute and 5-minute data give the same answer;
2. each average covers the samples actually present in ``[t, t + 1 h)`` and divides by their count
   (no low bias at the end of the series, gaps do not dilute it);
3. the per-hour load is a percentile (default p95) of the moving averages, not the max: one spike
   in a month does not veto an otherwise idle hour;
4. the window is chosen by *load*, not by flatness of headroom: an hour is eligible when its load is
   at most the day's lowest hourly load + ``tolerance`` (default 5 percentage points); the window is
   the longest circular run of eligible hours (wrapping over midnight from any hour), ties broken by
   the lowest mean load, then the earliest start; every hour of the run counts and the run still
   open at midnight is closed; all 24 hours eligible -> ``00:00``-``00:00`` (the whole day);
5. hours without any sample are never eligible (no evidence of idleness; legacy calls them 100 %
   free);
6. ``to`` is the first hour after the window (exclusive end) and hours are zero padded ``"HH:00"``;
7. ``resourceDelta = -int(100 - max load in the window)``, clamped to [-100, 0] (the window's worst
   hour bounds the safe reduction; legacy uses the first hour's room).

No samples -> ``None`` from ``legacy``/``fixed``; ``optimize`` then answers ``resourceDelta 0`` with
empty ``from``/``to`` (the legacy notebook crashed on an empty DataFrame; the caller may instead drop
the VM). Hours are UTC throughout. The ``*_arrays`` variants take parallel epoch-second/value
sequences so that large fleets need not build one object per sample; the ``Sample`` variants
delegate to them.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal

LEGACY_WINDOW = 12  # 60 / TIME_GRANULARITY (5 minutes): counted in samples, not minutes
LEGACY_TOLERANCE = 1  # percentage points between "similar" hourly headrooms
HOURS = 24

Mode = Literal["legacy", "fixed"]


@dataclass(frozen=True)
class Sample:
    """One point of a usage series: the metric's average over its interval, stamped in UTC."""

    timestamp: datetime
    average: float

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:  # a naive time would silently be read as local time
            raise ValueError("timestamp: must be timezone aware (UTC)")


@dataclass(frozen=True)
class Window:
    """A daily UTC window from start_hour to end_hour and the reduction it allows (negative percent).

    Fixed mode: end_hour is exclusive (the first hour after the window). Legacy mode keeps Krateo's
    ``to = s + n``: exclusive for a run starting at hour 0 (or wrapped), the run's last hour otherwise.
    ``padded`` selects the hour format of the contract: ``"H:00"`` (legacy) or ``"HH:00"`` (fixed).
    """

    start_hour: int
    end_hour: int
    resource_delta: int
    padded: bool = False

    def _hour(self, hour: int) -> str:
        return f"{hour:02d}:00" if self.padded else f"{hour}:00"

    def as_contract(self, resourceid: str, metricname: str, unit: str) -> dict[str, Any]:
        """Krateo's output object (the moving-window microservice's), which every frontend and the policy index as is."""
        return {"resourceid": resourceid, "metricname": metricname, "unit": unit,
                "optimization": {"from": self._hour(self.start_hour), "to": self._hour(self.end_hour),
                                 "resourceDelta": int(self.resource_delta)}}


def empty_contract(resourceid: str, metricname: str, unit: str) -> dict[str, Any]:
    """The answer for a series without samples: no window, nothing to reduce."""
    return {"resourceid": resourceid, "metricname": metricname, "unit": unit,
            "optimization": {"from": "", "to": "", "resourceDelta": 0}}


# -- shared helpers ---------------------------------------------------------------------------------


def _prepare(timestamps: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Floats sorted by time (stable, like ORDER BY timestamp); the input is usually already sorted."""
    if len(timestamps) != len(values):
        raise ValueError(f"timestamps and values differ in length: {len(timestamps)} != {len(values)}")
    ts = list(map(float, timestamps))
    vals = list(map(float, values))
    if not all(map(operator.le, ts, islice(ts, 1, None))):
        order = sorted(range(len(ts)), key=ts.__getitem__)
        ts = [ts[i] for i in order]
        vals = [vals[i] for i in order]
    return ts, vals


def _hour_of(epoch_s: float) -> int:
    return int(epoch_s // 3600) % HOURS


def _epochs(samples: Sequence[Sample]) -> tuple[list[float], list[float]]:
    return [s.timestamp.timestamp() for s in samples], [float(s.average) for s in samples]


# -- legacy -----------------------------------------------------------------------------------------


def legacy_headroom(timestamps: Sequence[float], values: Sequence[float]) -> list[int]:
    """Krateo's per-hour headroom vector ``room[0..23]`` (the notebook's moving averages, hourly usage and peak); exposed for tests."""
    ts, vals = _prepare(timestamps, values)
    n = len(vals)
    avg_all = math.fsum(vals) / n if n else 0.0
    w = LEGACY_WINDOW
    # sum() adds floats left to right from 0.0, exactly like the notebook's loop; slices past the
    # end are short and still divided by 12
    ma = [sum(vals[i:i + w]) / w for i in range(n)]
    usage = [0.0] * HOURS
    counter = [0] * HOURS
    peak = [-1.0] * HOURS
    for t, value in zip(ts, ma, strict=True):
        h = int(t // 3600) % HOURS
        if value > avg_all:
            usage[h] += value
            counter[h] += 1
        if value > peak[h]:
            peak[h] = value
    room = [0] * HOURS
    for h in range(HOURS):
        mean_usage = usage[h] / counter[h] if counter[h] else usage[h]
        left_avg, left_max = 100 - mean_usage, 100 - peak[h]
        if left_avg > 0 and left_max > 0:
            room[h] = int(min(left_avg, left_max))
    return room


def legacy_window_from_headroom(room: Sequence[int]) -> Window:
    """The notebook's run scan on a 24-hour headroom vector, quirks included."""
    if len(room) != HOURS:
        raise ValueError(f"room: need {HOURS} hourly values, got {len(room)}")
    best = (room[0], 0, 0)  # (first hour's room v, counted length n, start s)
    cur = (room[0], 0, 0)
    for index, value in enumerate(room):
        if abs(value - cur[0]) > LEGACY_TOLERANCE:
            if cur[1] > best[1]:
                best = cur
            cur = (value, 0, index)  # a new run does not count its own first hour
        else:
            cur = (cur[0], cur[1] + 1, cur[2])
    # the run still open at hour 23 is never compared
    if best[2] == 0:  # wrap backwards over midnight only for a best run starting at hour 0
        for k in range(1, HOURS):
            if abs(room[-k] - best[0]) <= LEGACY_TOLERANCE:
                best = (best[0], best[1] + 1, -k)
            else:
                break
    v, n, s = best
    return Window(start_hour=s if s >= 0 else HOURS + s, end_hour=s + n, resource_delta=-v)


def legacy_arrays(timestamps: Sequence[float], values: Sequence[float]) -> Window | None:
    """Krateo's legacy window from parallel epoch-second timestamps and values; None without data."""
    if not values:
        return None
    return legacy_window_from_headroom(legacy_headroom(timestamps, values))


def legacy(samples: Sequence[Sample]) -> Window | None:
    """Krateo's legacy window (bit-compatible, see the module docstring); None without samples.

    The caller answers ``resourceDelta 0`` with empty ``from``/``to`` (see ``optimize``) or drops the VM.
    """
    return legacy_arrays(*_epochs(samples))


# -- fixed ------------------------------------------------------------------------------------------


def _median_gap(ts: Sequence[float]) -> float:
    gaps = sorted(b - a for a, b in zip(ts, islice(ts, 1, None), strict=False) if b > a)
    if not gaps:
        return 3600.0
    mid = len(gaps) // 2
    return gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2


def _percentile(ordered: Sequence[float], percentile: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    rank = (len(ordered) - 1) * percentile / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def fixed_hourly_load(timestamps: Sequence[float], values: Sequence[float], *, percentile: float = 95.0,
                      step_s: float | None = None) -> list[float | None]:
    """Per UTC hour: the percentile of the one-hour moving average (None for hours without samples)."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile: must be within [0, 100], got {percentile}")
    if step_s is not None and not step_s > 0:
        raise ValueError(f"step: must be positive, got {step_s} s")
    ts, vals = _prepare(timestamps, values)
    step = step_s if step_s is not None else _median_gap(ts)
    per_window = max(1, round(3600 / step))
    reach = per_window * step - step / 2  # samples in [t, t + window), tolerant to half a step of jitter
    buckets: list[list[float]] = [[] for _ in range(HOURS)]
    j = 0
    for i, t in enumerate(ts):
        j = bisect_left(ts, t + reach, max(j, i + 1))
        buckets[int(t // 3600) % HOURS].append(sum(vals[i:j]) / (j - i))
    loads: list[float | None] = []
    for bucket in buckets:
        bucket.sort()
        loads.append(_percentile(bucket, percentile) if bucket else None)
    return loads


def fixed_window_from_load(loads: Sequence[float | None], *, tolerance: float = 5.0) -> Window | None:
    """The lowest-usage circular window over 24 hourly loads (rule 4 of the module docstring)."""
    if len(loads) != HOURS:
        raise ValueError(f"loads: need {HOURS} hourly values, got {len(loads)}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance: must be >= 0, got {tolerance}")
    known = [x for x in loads if x is not None]
    if not known:
        return None
    ceiling = min(known) + tolerance
    eligible = [x is not None and x <= ceiling for x in loads]
    if all(eligible):
        start, length = 0, HOURS
    else:
        first_break = eligible.index(False)
        runs: list[tuple[int, int]] = []  # (start, length), scanned from just after a break
        run_start, run_len = -1, 0
        for k in range(1, HOURS + 1):
            h = (first_break + k) % HOURS
            if eligible[h]:
                if run_len == 0:
                    run_start = h
                run_len += 1
            elif run_len:
                runs.append((run_start, run_len))
                run_len = 0
        if not runs:
            return None

        def mean_load(run: tuple[int, int]) -> float:
            return math.fsum(loads[(run[0] + i) % HOURS] or 0.0 for i in range(run[1])) / run[1]

        start, length = min(runs, key=lambda r: (-r[1], mean_load(r), r[0]))
    worst = max(loads[(start + i) % HOURS] or 0.0 for i in range(length))
    headroom = max(0, min(100, int(100 - worst)))
    return Window(start_hour=start, end_hour=(start + length) % HOURS, resource_delta=-headroom, padded=True)


def fixed_arrays(timestamps: Sequence[float], values: Sequence[float], *, percentile: float = 95.0,
                 step_s: float | None = None, tolerance: float = 5.0) -> Window | None:
    """The fixed window from parallel epoch-second timestamps and values; None without data."""
    if not values:
        return None
    loads = fixed_hourly_load(timestamps, values, percentile=percentile, step_s=step_s)
    return fixed_window_from_load(loads, tolerance=tolerance)


def fixed(samples: Sequence[Sample], *, percentile: float = 95.0, step: timedelta | None = None,
          tolerance: float = 5.0) -> Window | None:
    """The fixed window (deliberate differences in the module docstring); None without samples."""
    return fixed_arrays(*_epochs(samples), percentile=percentile,
                        step_s=step.total_seconds() if step is not None else None, tolerance=tolerance)


# -- contract ---------------------------------------------------------------------------------------


def optimize(resourceid: str, metricname: str, unit: str, samples: Sequence[Sample],
             mode: Mode = "legacy") -> dict[str, Any]:
    """The contract object for one series; no samples -> resourceDelta 0 with empty from/to."""
    if mode == "legacy":
        window = legacy(samples)
    elif mode == "fixed":
        window = fixed(samples)
    else:
        raise ValueError(f"mode: must be 'legacy' or 'fixed', got {mode!r}")
    if window is None:
        return empty_contract(resourceid, metricname, unit)
    return window.as_contract(resourceid, metricname, unit)


def _text(item: dict[str, Any], key: str, loc: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{loc}.{key}: must be a string, got {type(value).__name__}")
    return value


def _timestamp(value: Any, loc: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{loc}: must be an RFC 3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{loc}: not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{loc}: needs a UTC offset or 'Z': {value!r}")
    return parsed.astimezone(UTC)


def parse_cyclic(payload: Any) -> list[tuple[str, str, str, list[Sample]]]:
    """The `cyclic` notebook's output -> (resourceid, metricname, unit, samples) per series.

    Input: ``[{"resourceid", "metricname", "unit", "timeseries": [{"average", "timestamp"}]}]``.
    A malformed field raises ValueError naming it (``[i].timeseries[j].average: ...``).
    """
    if not isinstance(payload, list):
        raise ValueError(f"payload: must be a list of series, got {type(payload).__name__}")
    out: list[tuple[str, str, str, list[Sample]]] = []
    for i, item in enumerate(payload):
        loc = f"[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{loc}: must be an object, got {type(item).__name__}")
        rid, metric, unit = (_text(item, k, loc) for k in ("resourceid", "metricname", "unit"))
        series = item.get("timeseries")
        if not isinstance(series, list):
            raise ValueError(f"{loc}.timeseries: must be a list, got {type(series).__name__}")
        samples: list[Sample] = []
        for j, point in enumerate(series):
            ploc = f"{loc}.timeseries[{j}]"
            if not isinstance(point, dict):
                raise ValueError(f"{ploc}: must be an object, got {type(point).__name__}")
            average = point.get("average")
            if isinstance(average, bool) or not isinstance(average, int | float):
                raise ValueError(f"{ploc}.average: must be a number, got {type(average).__name__}")
            if not math.isfinite(average):
                raise ValueError(f"{ploc}.average: must be finite, got {average}")
            samples.append(Sample(_timestamp(point.get("timestamp"), f"{ploc}.timestamp"), float(average)))
        out.append((rid, metric, unit, samples))
    return out
