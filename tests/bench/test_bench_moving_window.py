"""The moving-window optimizer over a fleet: VMS VMs x 30 days of 15-minute samples (2,880 each).

Timed: `legacy_arrays` and `fixed_arrays` on every VM (parallel epoch-second/value lists, one shared
timestamp list, values drawn from a pool of POOL seeded traces so memory stays small). Baseline, same
run and same samples: a plain Python pass computing just the per-UTC-hour mean (raw aggregation).
ratio = baseline_s / ours_s (1.0 = as fast as the raw pass; lower = that many times slower).
Also timed: the `Sample`-object entry point on SAMPLE_VMS VMs (per-VM cost of building objects).
Sanity floor only: each mode within 20x of the raw pass, every VM answered.
FINOPS_BENCH_VMS scales it (default 10,000). Writes .bench/moving_window.json and prints it.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from functions.algorithms.moving_window import Sample, fixed, fixed_arrays, legacy, legacy_arrays

VMS = int(os.environ.get("FINOPS_BENCH_VMS", "10000"))
POOL = 64
SAMPLE_VMS = 100
DAYS, STEP_S = 30, 900
START_S = datetime(2025, 3, 3, tzinfo=UTC).timestamp()
RESULTS = Path(__file__).resolve().parents[2] / ".bench"


def pool_of_traces() -> list[list[float]]:
    """Office-hours, flat-busy, always-on and random-walk CPU traces, seeded."""
    out = []
    for k in range(POOL):
        rng = random.Random(k)
        kind, busy, idle = k % 4, rng.uniform(30, 90), rng.uniform(1, 15)
        start_h, length = rng.randint(5, 11), rng.randint(6, 12)
        level, values = 50.0, []
        for i in range(DAYS * 96):
            hour, weekday = (i // 4) % 24, (i // 96) % 7 < 5
            in_day = start_h <= hour < start_h + length
            if kind == 0:
                v = busy + rng.gauss(0, 8) if weekday and in_day else idle + abs(rng.gauss(0, 3))
            elif kind == 1:
                v = busy + rng.uniform(-0.5, 0.5) if in_day else idle + abs(rng.gauss(0, 4))
            elif kind == 2:
                v = busy + rng.gauss(0, 5)
            else:
                level = min(100.0, max(0.0, level + rng.gauss(0, 2)))
                v = level
            values.append(min(100.0, max(0.0, v)))
        out.append(values)
    return out


def per_hour_mean(timestamps: list[float], values: list[float]) -> list[float | None]:
    """The baseline: raw per-UTC-hour mean, one pass."""
    sums, counts = [0.0] * 24, [0] * 24
    for t, v in zip(timestamps, values, strict=True):
        h = int(t // 3600) % 24
        sums[h] += v
        counts[h] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


def timed(fn: Callable[[list[float], list[float]], object], timestamps: list[float],
          traces: list[list[float]]) -> tuple[float, int]:
    answered = 0
    started = time.perf_counter()
    for vm in range(VMS):
        answered += fn(timestamps, traces[vm % POOL]) is not None
    return time.perf_counter() - started, answered


def test_moving_window_over_a_fleet() -> None:
    timestamps = [START_S + STEP_S * i for i in range(DAYS * 96)]
    traces = pool_of_traces()
    baseline_s, baseline_n = timed(per_hour_mean, timestamps, traces)
    legacy_s, legacy_n = timed(legacy_arrays, timestamps, traces)
    fixed_s, fixed_n = timed(fixed_arrays, timestamps, traces)
    samples = [[Sample(datetime.fromtimestamp(t, UTC), v) for t, v in zip(timestamps, traces[k], strict=True)]
               for k in range(min(SAMPLE_VMS, POOL))]
    started = time.perf_counter()
    for vm in range(SAMPLE_VMS):
        legacy(samples[vm % len(samples)])
        fixed(samples[vm % len(samples)])
    objects_s = time.perf_counter() - started
    total = VMS * len(timestamps)
    result = {
        "name": "moving_window", "vms": VMS, "samples_per_vm": len(timestamps), "samples": total,
        "baseline_s": round(baseline_s, 3), "legacy_s": round(legacy_s, 3), "fixed_s": round(fixed_s, 3),
        "ratio_legacy": round(baseline_s / legacy_s, 3), "ratio_fixed": round(baseline_s / fixed_s, 3),
        "legacy_samples_per_s": round(total / legacy_s), "fixed_samples_per_s": round(total / fixed_s),
        "legacy_ms_per_vm": round(1000 * legacy_s / VMS, 3), "fixed_ms_per_vm": round(1000 * fixed_s / VMS, 3),
        "sample_objects_both_modes_ms_per_vm": round(1000 * objects_s / SAMPLE_VMS, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "moving_window.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert baseline_n == legacy_n == fixed_n == VMS
    assert baseline_s / legacy_s >= 0.05 and baseline_s / fixed_s >= 0.05
