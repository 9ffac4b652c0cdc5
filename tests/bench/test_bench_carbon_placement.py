"""Carbon-aware placement on a seasonal-naive forecast vs an oracle that knows the actual series.

Data: tests/data/carbon-intensity-6-regions.csv, hourly gCO2eq/kWh for 6 regions over 60 days, made
by `carbon_csv()` below (deterministic: daily solar dip, evening peak, multi-day wind swings, noise,
region levels); `test_the_shipped_csv_is_reproducible` regenerates it byte for byte.

For JOBS seeded jobs (random allowed-region subsets of 1-6 in random order, durations 1-8 h, deadlines
max(6, duration + 1)-48 h, `now` between day 14 and day 57, sometimes off the hour):
- ours: `choose()` on `seasonal_naive_forecast()` of the history before `now`; its realised intensity
  is the *actual* mean of the chosen (region, start) window;
- oracle: `choose()` on the actual series;
- baseline: the actual mean when started at the first hour >= now in the first allowed region;
- saving = baseline - realised. ratio = mean(ours saving) / mean(oracle saving) (issue target >= 0.9),
  also for single-region jobs (time shifting only).
Sanity floor only: ratio > 0. Writes .bench/carbon_placement.json and prints it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from functions.algorithms.carbon_placement import choose, seasonal_naive_forecast

JOBS = int(os.environ.get("FINOPS_BENCH_CARBON_JOBS", "1000"))
CSV_PATH = Path(__file__).resolve().parents[1] / "data" / "carbon-intensity-6-regions.csv"
RESULTS = Path(__file__).resolve().parents[2] / ".bench"
START = datetime(2025, 4, 1, tzinfo=UTC)
DAYS = 60
HOUR = timedelta(hours=1)
# region: (mean level, solar dip share, evening peak share, wind swing share, noise share)
REGIONS = {
    "swedencentral": (30.0, 0.05, 0.10, 0.35, 0.05),
    "francecentral": (55.0, 0.15, 0.25, 0.20, 0.05),
    "northeurope": (290.0, 0.05, 0.10, 0.45, 0.04),
    "westeurope": (330.0, 0.30, 0.12, 0.25, 0.04),
    "germanywestcentral": (380.0, 0.35, 0.10, 0.30, 0.04),
    "polandcentral": (690.0, 0.10, 0.06, 0.08, 0.03),
}
Series = dict[str, list[tuple[datetime, float]]]


def carbon_csv(seed: int = 2025) -> str:
    """The shipped CSV's text: `timestamp` then one column per region, one row per hour."""
    rng = random.Random(seed)
    wind = dict.fromkeys(REGIONS, 0.0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", *REGIONS])
    for i in range(DAYS * 24):
        t = START + i * HOUR
        hour = t.hour
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))  # 06:00-18:00 UTC
        evening = math.exp(-((hour - 18.5) ** 2) / 4)
        cloudy = rng.random() < 0.3
        row = [t.strftime("%Y-%m-%dT%H:%M:%SZ")]
        for region, (level, solar, peak, swing, noise) in REGIONS.items():
            wind[region] = 0.97 * wind[region] + rng.gauss(0, 0.25)  # multi-day weather, AR(1)
            value = level * (1 - solar * sun * (0.4 if cloudy else 1.0) + peak * evening
                             + swing * math.tanh(wind[region]) + rng.gauss(0, noise))
            row.append(f"{max(5.0, value):.1f}")
        writer.writerow(row)
    return out.getvalue()


def load_series() -> Series:
    rows = list(csv.DictReader(io.StringIO(CSV_PATH.read_text())))
    return {region: [(datetime.fromisoformat(r["timestamp"]), float(r[region])) for r in rows]
            for region in REGIONS}


def actual_mean(series: Series, region: str, start: datetime, duration: timedelta) -> float:
    index = int((start - START) / HOUR)
    width = math.ceil(duration / HOUR)
    return statistics.fmean(v for _, v in series[region][index:index + width])


def test_the_shipped_csv_is_reproducible() -> None:
    text = carbon_csv()
    if not CSV_PATH.exists():  # first run writes it; afterwards it is only compared
        CSV_PATH.write_text(text)
    assert CSV_PATH.read_text() == text
    assert CSV_PATH.stat().st_size < 300_000


def test_forecast_placement_saves_most_of_what_an_oracle_saves() -> None:
    series = load_series()
    rng = random.Random(7)
    names = list(REGIONS)
    ours_savings, oracle_savings, single_ours, single_oracle = [], [], [], []
    same_region = same_start = 0
    decide_s = 0.0
    for _ in range(JOBS):
        allowed = rng.sample(names, rng.randint(1, len(names)))
        hours = rng.randint(1, 8)
        duration = hours * HOUR
        now = START + timedelta(hours=rng.randint(14 * 24, 57 * 24), minutes=rng.choice([0, 0, 0, 20, 45]))
        deadline = now + timedelta(hours=rng.randint(max(6, hours + 1), 48))  # always room for the job
        history = {r: [(t, v) for t, v in series[r][int((now - START) / HOUR) - 72:] if t < now]
                   for r in allowed}
        started = time.perf_counter()
        forecast = {r: seasonal_naive_forecast(history[r], now, deadline - now) for r in allowed}
        ours = choose(forecast, allowed, duration, now, deadline, source="seasonal-naive")
        decide_s += time.perf_counter() - started
        oracle = choose(series, allowed, duration, now, deadline, source="actual")
        assert ours is not None and oracle is not None
        assert ours.region in allowed and now <= ours.start and ours.start + duration <= deadline
        baseline = oracle.baseline_intensity  # the actual start-now mean in the first allowed region
        ours_saving = baseline - actual_mean(series, ours.region, ours.start, duration)
        ours_savings.append(ours_saving)
        oracle_savings.append(oracle.saving)
        if len(allowed) == 1:
            single_ours.append(ours_saving)
            single_oracle.append(oracle.saving)
        same_region += ours.region == oracle.region
        same_start += ours.region == oracle.region and ours.start == oracle.start
    ratio = statistics.fmean(ours_savings) / statistics.fmean(oracle_savings)
    single_ratio = statistics.fmean(single_ours) / statistics.fmean(single_oracle) if single_ours else None
    result = {
        "name": "carbon_placement", "jobs": JOBS, "regions": len(REGIONS), "days": DAYS,
        "mean_saving_forecast": round(statistics.fmean(ours_savings), 2),
        "mean_saving_oracle": round(statistics.fmean(oracle_savings), 2),
        "ratio": round(ratio, 4), "target_ratio": 0.9,
        "single_region_jobs": len(single_ours),
        "single_region_ratio": round(single_ratio, 4) if single_ratio is not None else None,
        "same_region_share": round(same_region / JOBS, 4), "same_window_share": round(same_start / JOBS, 4),
        "forecast_and_choose_ms_per_job": round(1000 * decide_s / JOBS, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "carbon_placement.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert ratio > 0
