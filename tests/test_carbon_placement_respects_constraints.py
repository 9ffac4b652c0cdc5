"""`carbon_placement.choose` respects every constraint and is optimal; the seasonal-naive fallback is exact.

Cases (property tests over 300 seeded random cases: 1-6 regions with random gaps, allowed subsets that
may name regions without data, `now` off the hour, durations 30 min - 6 h, deadlines 0-30 h ahead):
- the region is always an allowed one, the start is on the hour, never before `now`, and the job ends
  by the deadline;
- the chosen mean equals a brute-force minimum over every feasible (region, start), and is the
  actual mean of the chosen window; nothing feasible <-> None;
- the baseline is starting at the first hour >= now in the first allowed region with data there;
- ties go to the earliest start, then to the earlier allowed region;
- a deadline shorter than the job -> None; naive datetimes are refused;
- seasonal naive: each point repeats the value a day earlier, a gap falls back to two days earlier,
  horizons over a day repeat the last day, history at or after `now` is not used.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from functions.algorithms.carbon_placement import Placement, choose, seasonal_naive_forecast

T0 = datetime(2025, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
Series = dict[str, list[tuple[datetime, float]]]


def random_case(rng: random.Random) -> tuple[Series, list[str], timedelta, datetime, datetime]:
    names = [f"r{i}" for i in range(rng.randint(1, 6))]
    hours = rng.randint(24, 72)
    series: Series = {}
    for name in names:
        gap_rate = rng.choice([0.0, 0.0, 0.05, 0.3])
        level = rng.uniform(20, 600)
        series[name] = [(T0 + i * HOUR, round(level + rng.uniform(-50, 50), rng.choice([0, 1, 3])))
                        for i in range(hours) if rng.random() >= gap_rate]
    allowed = rng.sample([*names, "nodata-1", "nodata-2"], rng.randint(1, len(names) + 2))
    now = T0 + timedelta(minutes=rng.randint(-120, hours * 60))
    duration = timedelta(minutes=rng.choice([30, 60, 90, 120, 180, 360]))
    deadline = now + timedelta(minutes=rng.randint(0, 30 * 60))
    return series, allowed, duration, now, deadline


def brute_force(series: Series, allowed: list[str], duration: timedelta, now: datetime,
                deadline: datetime) -> dict[tuple[str, datetime], float]:
    """Every feasible (region, start) and its mean, by plain enumeration."""
    width = math.ceil(duration / HOUR)
    start = now.replace(minute=0, second=0, microsecond=0)
    if start < now:
        start += HOUR
    out = {}
    while start + duration <= deadline:
        for region in allowed:
            points = dict(series.get(region, []))
            window = [points.get(start + k * HOUR) for k in range(width)]
            if all(v is not None for v in window):
                out[(region, start)] = math.fsum(v for v in window if v is not None) / width
        start += HOUR
    return out


def test_placements_respect_constraints_and_match_brute_force() -> None:
    feasible_cases = 0
    for seed in range(300):
        rng = random.Random(seed)
        series, allowed, duration, now, deadline = random_case(rng)
        got = choose(series, allowed, duration, now, deadline, source="test")
        expected = brute_force(series, allowed, duration, now, deadline)
        if not expected:
            assert got is None, seed
            continue
        feasible_cases += 1
        assert got is not None, seed
        assert got.region in allowed and got.source == "test"
        assert got.start >= now and got.start + duration <= deadline, seed
        assert got.start.minute == got.start.second == 0 and got.start.tzinfo is not None
        assert got.mean_intensity == pytest.approx(min(expected.values()), abs=1e-9), seed
        assert got.mean_intensity == pytest.approx(expected[(got.region, got.start)], abs=1e-9), seed
        start0 = now.replace(minute=0, second=0, microsecond=0)
        start0 += HOUR if start0 < now else timedelta(0)
        at_start0 = [expected[(r, start0)] for r in allowed if (r, start0) in expected]
        assert got.baseline_intensity == pytest.approx(at_start0[0] if at_start0 else got.mean_intensity,
                                                       abs=1e-9), seed
        assert got.baseline_intensity >= got.mean_intensity - 1e-9 and got.saving >= -1e-9
    assert feasible_cases > 150  # the generator exercises the interesting branch


def test_ties_go_to_the_earliest_start_then_to_the_first_allowed_region() -> None:
    flat = [(T0 + i * HOUR, 100.0) for i in range(24)]
    got = choose({"a": flat, "b": flat}, ["b", "a"], 2 * HOUR, T0 + timedelta(minutes=1), T0 + 24 * HOUR)
    assert got is not None and (got.region, got.start) == ("b", T0 + HOUR)
    assert got.saving == 0.0 and "b" in got.message


def test_the_lowest_window_is_found_across_regions_and_time() -> None:
    a = [(T0 + i * HOUR, 300.0 - (50.0 if 10 <= i < 13 else 0.0)) for i in range(24)]
    b = [(T0 + i * HOUR, 200.0 + (0.0 if i != 5 else -150.0)) for i in range(24)]
    got = choose({"a": a, "b": b, "elsewhere": [(T0 + i * HOUR, 1.0) for i in range(24)]}, ["a", "b"],
                 3 * HOUR, T0, T0 + 20 * HOUR)
    assert got == Placement("b", T0 + 3 * HOUR, 150.0, 300.0, "forecast", got.message if got else "")
    # the deadline moves the answer
    got = choose({"a": a, "b": b}, ["a", "b"], 3 * HOUR, T0 + 6 * HOUR, T0 + 20 * HOUR)
    assert got is not None and (got.region, got.start, got.mean_intensity) == ("b", T0 + 6 * HOUR, 200.0)


def test_nothing_fits_gives_none() -> None:
    flat = {"a": [(T0 + i * HOUR, 100.0) for i in range(48)]}
    assert choose(flat, ["a"], 4 * HOUR, T0, T0 + 3 * HOUR) is None  # deadline shorter than the job
    assert choose(flat, ["a"], 4 * HOUR, T0 + timedelta(minutes=1), T0 + 4 * HOUR) is None  # next hour too late
    assert choose(flat, ["b"], HOUR, T0, T0 + 10 * HOUR) is None  # no data for the allowed region
    assert choose(flat, [], HOUR, T0, T0 + 10 * HOUR) is None
    assert choose(flat, ["a"], HOUR, T0 + 60 * HOUR, T0 + 70 * HOUR) is None  # past the data
    with pytest.raises(ValueError, match="now"):
        choose(flat, ["a"], HOUR, datetime(2025, 5, 1), T0 + 10 * HOUR)


def test_seasonal_naive_repeats_the_last_day() -> None:
    rng = random.Random(5)
    history = [(T0 + i * HOUR, float(rng.randint(50, 500))) for i in range(72)]
    values = dict(history)
    del values[T0 + 60 * HOUR]  # a gap on the third day
    kept = sorted(values.items())
    now = T0 + 72 * HOUR - timedelta(minutes=30)  # the last hour is not yet history
    got = seasonal_naive_forecast([*kept, (T0 + 80 * HOUR, 9999.0)], now, timedelta(hours=50))
    assert [t for t, _ in got] == [T0 + (72 + i) * HOUR for i in range(50)]
    for t, value in got:
        back = t - timedelta(days=1)
        while back not in values or back >= now:
            back -= timedelta(days=1)
        assert value == values[back], t
    by_time = dict(got)
    assert by_time[T0 + 84 * HOUR] == values[T0 + 36 * HOUR]  # 60 h missing -> two days back
    assert by_time[T0 + 100 * HOUR] == values[T0 + 52 * HOUR]  # beyond a day ahead: the last day again
    assert 9999.0 not in by_time.values()
    assert seasonal_naive_forecast([], now, HOUR) == []
