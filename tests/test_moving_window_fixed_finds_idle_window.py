"""`moving_window.fixed` finds the truly idle window where Krateo's legacy algorithm does not.

Labelled synthetic traces (30 days from Monday 2025-03-03, seeded noise, UTC); each test asserts both
answers so the difference stays visible:
- office VM: busy 08-18 on weekdays (60 % +- 8), idle nights and weekends (5-10 %), sampled every
  5 minutes: legacy (12 samples = 1 hour here) picks the busy 8:00-16:00 with -34; fixed picks
  18:00-07:00 (hour 7 excluded: its hour-ahead average already sees 08:00) with about -91;
- flat-but-high days (70 % +- 0.3, 07-19) and noisy idle nights: legacy picks the flat busy day
  (7:00-16:00, -29) because it looks for flat headroom; fixed picks 19:00-06:00 with about -88;
- the office trace plus one 100 % spike at 02:00 on a single night: legacy's max splits the night and
  it picks the busy 8:00-14:00 (-34); fixed's p95 ignores the spike (18:00-07:00);
- sample-rate awareness: the same office trace as 5-minute samples and as 15-minute averages of them
  gives fixed the same window (and deltas within 2 points), while legacy changes its answer;
- edge rules: no samples -> None; an explicit step equals the inferred one; hours without samples
  are never proposed; a flat day proposes the whole day 00:00-00:00; bad parameters raise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from functions.algorithms.moving_window import Sample, Window, fixed, fixed_window_from_load, legacy, optimize

T0 = datetime(2025, 3, 3, tzinfo=UTC)
Level = Callable[[datetime, random.Random], float]


def trace(level: Level, minutes: int = 15, days: int = 30, seed: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(days * 24 * 60 // minutes):
        t = T0 + timedelta(minutes=minutes * i)
        out.append(Sample(t, max(0.0, min(100.0, level(t, rng)))))
    return out


def office(t: datetime, rng: random.Random) -> float:
    if t.weekday() < 5 and 8 <= t.hour < 18:
        return 60 + rng.gauss(0, 8)
    return 5 + abs(rng.gauss(0, 3))


def flat_day(t: datetime, rng: random.Random) -> float:
    if 7 <= t.hour < 19:
        return 70 + rng.uniform(-0.3, 0.3)
    return 5 + abs(rng.gauss(0, 4))


def to_15_minutes(samples: list[Sample]) -> list[Sample]:
    """Azure-style 15-minute averages of 5-minute samples."""
    return [Sample(samples[i].timestamp, sum(s.average for s in samples[i:i + 3]) / 3)
            for i in range(0, len(samples), 3)]


def answer(samples: list[Sample], mode: str) -> dict[str, object]:
    got = optimize("vm", "Percentage CPU", "Percent", samples, "fixed" if mode == "fixed" else "legacy")
    opt = got["optimization"]
    assert isinstance(opt, dict)
    return opt


def test_an_office_vm_is_idle_at_night_not_during_office_hours() -> None:
    samples = trace(office, minutes=5)
    assert answer(samples, "legacy") == {"from": "8:00", "to": "16:00", "resourceDelta": -34}
    got = fixed(samples)
    assert got is not None and (got.start_hour, got.end_hour) == (18, 7)
    assert -93 <= got.resource_delta <= -89
    assert answer(samples, "fixed")["from"] == "18:00" and answer(samples, "fixed")["to"] == "07:00"


def test_a_flat_but_busy_day_does_not_win_over_idle_nights() -> None:
    samples = trace(flat_day)
    assert answer(samples, "legacy") == {"from": "7:00", "to": "16:00", "resourceDelta": -29}
    got = fixed(samples)
    assert got is not None and (got.start_hour, got.end_hour) == (19, 6)
    assert -90 <= got.resource_delta <= -86


def test_one_spike_in_a_month_does_not_veto_an_idle_night() -> None:
    def spiky(t: datetime, rng: random.Random) -> float:
        if t.day == 10 and t.hour == 2 and t.minute == 0:
            return 100.0
        return office(t, rng)

    samples = trace(spiky)
    legacy_window = legacy(samples)
    assert legacy_window is not None and legacy_window.start_hour not in range(18, 24)  # the night is split
    assert answer(samples, "legacy") == {"from": "8:00", "to": "14:00", "resourceDelta": -34}
    got = fixed(samples)
    assert got is not None and (got.start_hour, got.end_hour) == (18, 7)


def test_5_minute_and_15_minute_data_give_the_same_fixed_window() -> None:
    five = trace(office, minutes=5)
    fifteen = to_15_minutes(five)
    assert len(fifteen) * 3 == len(five)
    a, b = fixed(five), fixed(fifteen)
    assert a is not None and b is not None
    assert (a.start_hour, a.end_hour) == (b.start_hour, b.end_hour) == (18, 7)
    assert abs(a.resource_delta - b.resource_delta) <= 2
    # legacy counts 12 samples: 1 hour of 5-minute data, 3 hours of 15-minute data
    assert answer(five, "legacy") != answer(fifteen, "legacy")
    assert answer(five, "legacy") == {"from": "8:00", "to": "16:00", "resourceDelta": -34}
    assert answer(fifteen, "legacy") == {"from": "8:00", "to": "15:00", "resourceDelta": -36}


def test_edge_rules() -> None:
    assert fixed([]) is None
    assert optimize("vm", "m", "u", [], "fixed")["optimization"] == {"from": "", "to": "", "resourceDelta": 0}
    samples = trace(office)
    assert fixed(samples, step=timedelta(minutes=15)) == fixed(samples)
    # hours 20-23 never sampled: they are not proposed, although legacy would call them 100 % free
    gappy = [s for s in samples if s.timestamp.hour < 20]
    got = fixed(gappy)
    assert got is not None and (got.start_hour, got.end_hour) == (0, 7)
    # a flat day: the whole day, 00:00-00:00
    flat = fixed(trace(lambda t, rng: 20 + rng.uniform(-0.5, 0.5)))
    assert flat == Window(0, 0, -79, padded=True)
    # the tolerance band: 7 hours within 5 points of the minimum, the rest far above
    loads: list[float | None] = [3.0, 4.0, 8.0, 5.0, 6.0, 7.5, 2.0, *([50.0] * 17)]
    assert fixed_window_from_load(loads) == Window(0, 2, -96, padded=True)  # 8.0 breaks the run (> 2 + 5)
    assert fixed_window_from_load(loads, tolerance=6.0) == Window(0, 7, -92, padded=True)
    with pytest.raises(ValueError, match="percentile"):
        fixed(samples, percentile=101)
    with pytest.raises(ValueError, match="mode"):
        optimize("vm", "m", "u", samples, "other")  # type: ignore[arg-type]
