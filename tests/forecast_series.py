"""Realistic metric series with a held-back window, for the forecaster's tests and benchmark (a plain
helper module, not a test).

`cases(seed)` returns `Case`s: a history (NaN = missing) and the `future` that followed it, fully
observed, so a forecast of the history can be scored on the future. The families are what the
forecaster is fed in practice (Krateo's TTM runner sends 512 points, 15-minute metrics, and asks for
96): business-hours CPU at 15 minutes (daily cycle of 96 points), hourly CPU with a weekly cycle
(weekends quiet), a growing service (trend on a daily cycle), a level shift (a resize), a flat busy
VM and a random walk (no cycle), spiky batch load, and every family with random and block gaps. The
carbon-intensity regions of tests/data/carbon-intensity-6-regions.csv (hourly, daily solar dip plus
multi-day wind swings) are read as further cases by `carbon_cases()`.

`mase(forecast, case)` scales the forecast's mean absolute error on the future by the history's
in-sample one-season naive error (Hyndman and Koehler 2006), with the case's true season.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CARBON_CSV = Path(__file__).resolve().parent / "data" / "carbon-intensity-6-regions.csv"
FAMILIES = ("office-15m", "weekly-1h", "growing-15m", "resized-15m", "flat", "random-walk", "spiky-1h")


@dataclass(frozen=True)
class Case:
    """One series: `history` (float64, NaN = missing), the `future` after it, its true `season`."""

    name: str
    history: np.ndarray
    future: np.ndarray
    season: int


def _office(rng: np.random.Generator, n: int, per_day: int, weekly: bool) -> np.ndarray:
    """CPU-like load: busy in a random working window, idle otherwise, noisy, optionally quiet weekends."""
    t = np.arange(n)
    hour = (t % per_day) * 24.0 / per_day
    start, length = rng.uniform(6, 10), rng.uniform(7, 11)
    ramp = 0.7  # hours to ramp up and down, so the cycle is smooth like real utilisation
    busy_share = np.clip(np.minimum(hour - start, start + length - hour) / ramp + 0.5, 0.0, 1.0)
    if weekly:
        busy_share = busy_share * np.where((t // per_day) % 7 < 5, 1.0, rng.uniform(0.0, 0.3))
    idle, busy = rng.uniform(2, 15), rng.uniform(35, 90)
    noise = rng.normal(0, rng.uniform(1.5, 6), n)
    return np.clip(idle + (busy - idle) * busy_share + noise, 0, 100)


def _series(rng: np.random.Generator, family: str, n: int) -> tuple[np.ndarray, int]:
    if family == "office-15m":
        return _office(rng, n, 96, weekly=False), 96
    if family == "weekly-1h":
        return _office(rng, n, 24, weekly=True), 24
    if family == "growing-15m":
        base = _office(rng, n, 96, weekly=False)
        return base * np.linspace(1.0, rng.uniform(1.3, 1.8), n), 96
    if family == "resized-15m":
        base = _office(rng, n, 96, weekly=False)
        at = int(rng.uniform(0.3, 0.7) * (n - 96))
        return np.where(np.arange(n) < at, base, base * rng.uniform(0.4, 0.7)), 96
    if family == "flat":
        level, phi = rng.uniform(20, 80), rng.uniform(0.3, 0.8)
        x, out = 0.0, np.empty(n)
        for i in range(n):
            x = phi * x + rng.normal(0, 3)
            out[i] = level + x
        return np.clip(out, 0, 100), 24
    if family == "random-walk":
        return 50 + np.cumsum(rng.normal(0, 1.0, n)), 24
    if family == "spiky-1h":
        base = _office(rng, n, 24, weekly=False) * 0.5
        spikes = (rng.random(n) < 0.03) * rng.uniform(20, 50, n)
        return np.clip(base + spikes, 0, 100), 24
    raise ValueError(family)


def with_gaps(rng: np.random.Generator, x: np.ndarray, rate: float = 0.05, blocks: int = 2,
              block_len: tuple[int, int] = (4, 30)) -> np.ndarray:
    """A copy with `rate` of the points missing at random and `blocks` runs missing (an exporter down)."""
    out = x.astype(np.float64).copy()
    out[rng.random(out.size) < rate] = np.nan
    for _ in range(blocks):
        length = int(rng.integers(*block_len))
        at = int(rng.integers(1, max(2, out.size - length - 1)))
        out[at: at + length] = np.nan
    out[-1] = x[-1]  # the latest point is observed, as when an exporter has just run
    return out


def cases(seed: int = 0, per_family: int = 6, length: int = 512, horizon: int = 96,
          gaps: bool = True) -> list[Case]:
    """`per_family` series of every family (half of them with gaps when `gaps`), history `length`."""
    rng = np.random.default_rng(seed)
    out = []
    for family in FAMILIES:
        for k in range(per_family):
            full, season = _series(rng, family, length + horizon)
            history = full[:length]
            gapped = gaps and k % 2 == 1
            if gapped:
                history = with_gaps(rng, history)
            out.append(Case(f"{family}{'-gaps' if gapped else ''}-{k}", history, full[length:], season))
    return out


def carbon_cases(length: int = 512, horizon: int = 96, every: int = 168) -> list[Case]:
    """Hourly carbon intensity per region, cut into (history, future) windows `every` hours apart."""
    with CARBON_CSV.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    out = []
    for col, region in enumerate(header[1:], start=1):
        values = np.array([float(r[col]) for r in body])
        for end in range(length, values.size - horizon + 1, every):
            out.append(Case(f"carbon-{region}-{end}", values[end - length: end], values[end: end + horizon], 24))
    return out


def mase(forecast: np.ndarray, case: Case) -> float:
    """MAE on the future over the history's in-sample seasonal naive MAE (observed pairs only)."""
    h, m = case.history, case.season
    pairs = np.abs(h[m:] - h[:-m])
    scale = float(np.nanmean(pairs)) if np.isfinite(pairs).any() else float(np.nanmean(np.abs(np.diff(h))))
    return float(np.mean(np.abs(np.asarray(forecast, dtype=np.float64) - case.future))) / max(scale, 1e-9)


def seasonal_naive(case: Case, horizon: int) -> np.ndarray:
    """The baseline: the last full season repeated (missing points carried from the season before)."""
    h, m = case.history.copy(), case.season
    for i in range(m, h.size):
        if np.isnan(h[i]):
            h[i] = h[i - m]
    last = h[-m:]
    last = np.where(np.isnan(last), np.nanmean(h), last)
    return np.resize(last, horizon)
