"""`moving_window.legacy` reproduces Krateo's `cyclic` notebook algorithm on real series
(krateoplatformops/finops-database-handler notebook_samples/cyclic.py at 765ff73, before the microservice).

Cases:
- three worked examples of that algorithm, each built as a week of 15-minute samples (with jitter that
  cannot move a headroom across an integer), not as headroom vectors:
  idle nights + irregular days -> 19:00 -> 7:00, -69 (the example of Krateo's handler README, wrapping over midnight);
  idle nights + a flat busy day -> 7:00 -> 18:00, -20 (the longest flat run wins, not the idlest);
  a constant series -> 1:00 -> 0:00, -headroom (the open run at 23 is never compared);
- the 12-sample window spans 3 hours of 15-minute data: hours just before a busy period lose
  headroom (forward-looking average), an hour without samples has headroom 100;
- the run scan's quirks on headroom vectors: the first hour only counts for the run at 0, the open
  final run loses, only a best run at 0 wraps;
- no samples -> None, and `optimize` answers resourceDelta 0 with empty from/to;
- the contract: exactly resourceid/metricname/unit/optimization{from,to,resourceDelta}, strings
  "H:00" without zero padding, an int delta; `parse_cyclic` reads the notebook's output and names a
  bad field.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.algorithms.moving_window import (
    Sample,
    Window,
    legacy,
    legacy_headroom,
    legacy_window_from_headroom,
    optimize,
    parse_cyclic,
)

T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, 00:00 UTC
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
IDLE = 30.5  # headroom int(100 - 30.5 +- 0.4) = 69
BUSY_FLAT = 79.5  # headroom int(100 - 79.5 +- 0.4) = 20


def week_of_15_minute_samples(raw_by_hour: list[float], days: int = 7, seed: int = 1) -> list[Sample]:
    """Every 15 minutes for `days` days; the value is the hour's level +- 0.4 (seeded)."""
    rng = random.Random(seed)
    out = []
    for i in range(days * 96):
        t = T0 + timedelta(minutes=15 * i)
        out.append(Sample(t, raw_by_hour[t.hour] + rng.uniform(-0.4, 0.4)))
    return out


def headroom(samples: list[Sample]) -> list[int]:
    return legacy_headroom([s.timestamp.timestamp() for s in samples], [s.average for s in samples])


def contract(samples: list[Sample]) -> dict[str, Any]:
    return optimize(VM, "Percentage CPU", "Percent", samples, "legacy")


def test_idle_nights_and_irregular_days_give_the_readme_example() -> None:
    raw = [IDLE] * 24
    for hour, level in zip(range(10, 19), [90, 40, 75, 55, 95, 45, 80, 60, 85], strict=True):
        raw[hour] = level
    samples = week_of_15_minute_samples(raw)
    room = headroom(samples)
    assert room[19:] + room[:7] == [69] * 12
    assert all(abs(room[h] - 69) > 1 for h in range(7, 19))
    assert legacy(samples) == Window(19, 7, -69)
    assert contract(samples)["optimization"] == {"from": "19:00", "to": "7:00", "resourceDelta": -69}


def test_a_flat_busy_day_beats_the_idle_night() -> None:
    raw = [IDLE] * 7 + [BUSY_FLAT] * 14 + [IDLE] * 3  # busy 07:00-20:45
    samples = week_of_15_minute_samples(raw)
    room = headroom(samples)
    # the 3-hour forward average ramps the hours before the busy period and after it
    assert room == [69, 69, 69, 69, 57, 40, 24] + [20] * 12 + [36, 53, 69, 69, 69]
    assert contract(samples)["optimization"] == {"from": "7:00", "to": "18:00", "resourceDelta": -20}


def test_a_constant_series_gives_one_to_midnight() -> None:
    samples = week_of_15_minute_samples([25.5] * 24)
    assert headroom(samples) == [74] * 24
    assert contract(samples)["optimization"] == {"from": "1:00", "to": "0:00", "resourceDelta": -74}


def test_the_window_counts_samples_and_an_hour_without_data_is_free() -> None:
    # one busy 15-minute sample at 12:00 on the last day only: the forward 12-sample average
    # carries it into 09:15-12:00, i.e. hours 9, 10, 11 and 12
    samples = [s for s in week_of_15_minute_samples([10.5] * 24) if s.timestamp.hour != 3]
    samples = [Sample(s.timestamp, 100.0 if s.timestamp == T0 + timedelta(days=6, hours=12) else s.average)
               for s in samples]
    room = headroom(samples)
    assert room[3] == 100
    assert [h for h in range(24) if room[h] < 89] == [9, 10, 11, 12]


def test_the_run_scan_keeps_krateos_quirks() -> None:
    # the run at 0 counts its first hour: 0-3 (4 hours) beats 10-13 (3 counted: 11, 12, 13)
    room = [50] * 4 + [10, 30] * 3 + [80] * 4 + [5, 25, 45, 65, 85, 5, 25, 45, 65, 85]
    assert legacy_window_from_headroom(room) == Window(0, 4, -50)
    # a longer run reaching midnight is never compared: the 5 hours at 0 win over 14 at the end
    room = [50] * 5 + [10, 30, 70, 90, 20] + [60] * 14
    assert legacy_window_from_headroom(room) == Window(0, 5, -50)
    # only a best run at 0 wraps: here the best starts at 6 and the similar hours 22-23 are ignored
    room = [40, 10, 70, 20, 80, 30] + [60] * 8 + [5, 25, 45, 65, 85, 5, 25, 45, 40, 40]
    assert legacy_window_from_headroom(room) == Window(6, 13, -60)
    # +-1 is measured from the run's first hour, not from the previous hour
    room = [70, 71, 72, 73] + [10, 30] * 10
    assert legacy_window_from_headroom(room) == Window(0, 2, -70)


def test_no_samples_gives_none_and_a_zero_contract() -> None:
    assert legacy([]) is None
    assert optimize(VM, "Percentage CPU", "Percent", [], "legacy") == {
        "resourceid": VM, "metricname": "Percentage CPU", "unit": "Percent",
        "optimization": {"from": "", "to": "", "resourceDelta": 0}}


def test_the_output_contract_has_krateos_keys_and_types() -> None:
    got = contract(week_of_15_minute_samples([IDLE] * 24))
    assert list(got) == ["resourceid", "metricname", "unit", "optimization"]
    assert list(got["optimization"]) == ["from", "to", "resourceDelta"]
    opt = got["optimization"]
    assert isinstance(opt, dict)
    assert type(opt["resourceDelta"]) is int and opt["resourceDelta"] <= 0
    assert opt["from"] == "1:00" and opt["to"] == "0:00"  # no zero padding in legacy mode
    assert Window(7, 9, -5, padded=True).as_contract("r", "m", "u")["optimization"] == {
        "from": "07:00", "to": "09:00", "resourceDelta": -5}


def test_parse_cyclic_reads_the_notebook_output_and_names_bad_fields() -> None:
    payload = [{"resourceid": VM, "metricname": "Percentage CPU", "unit": "Percent", "timeseries": [
        {"average": 10, "timestamp": "2024-03-01T10:00:00Z"}, {"average": 20.5, "timestamp": "2024-03-01T10:15:00Z"}]}]
    [(rid, metric, unit, samples)] = parse_cyclic(payload)
    assert (rid, metric, unit) == (VM, "Percentage CPU", "Percent")
    assert samples == [Sample(datetime(2024, 3, 1, 10, tzinfo=UTC), 10.0),
                       Sample(datetime(2024, 3, 1, 10, 15, tzinfo=UTC), 20.5)]
    bad_point = {"average": "x", "timestamp": "2024-03-01T10:00:00Z"}
    cases = [
        ({"resourceid": VM}, r"^payload: must be a list"),
        ([{"metricname": "m", "unit": "u", "timeseries": []}], r"^\[0\]\.resourceid: must be a string"),
        ([{**payload[0], "timeseries": None}], r"^\[0\]\.timeseries: must be a list"),
        ([{**payload[0], "timeseries": [bad_point]}], r"^\[0\]\.timeseries\[0\]\.average: must be a number"),
        ([{**payload[0], "timeseries": [{"average": 1.0, "timestamp": "yesterday"}]}],
         r"^\[0\]\.timeseries\[0\]\.timestamp: not an RFC 3339"),
        ([{**payload[0], "timeseries": [{"average": 1.0, "timestamp": "2024-03-01T10:00:00"}]}],
         r"^\[0\]\.timeseries\[0\]\.timestamp: needs a UTC offset"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            parse_cyclic(bad)
