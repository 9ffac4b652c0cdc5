"""Forecasts for a batch of metric series, without a server: shapes, gaps, scaling, season, the model.

Trigger:     a call (the KServe model's predict, the benchmark, the tests).
Input:       `past_values` float [B, L, 1] (Krateo's TTM tensor, unchanged) or [B, L]; NaN = missing.
Output:      `Forecast`: float32 [B, H], H = `Options.horizon` (96 unless asked, as TTM 512-96), with
             the season used and the method kept for each series.
Side effects: none.
Idempotency: a pure function of its input: the same batch gives the same forecast.

How a row is read. NaN before the first observed value is padding: a batch holds series of different
lengths NaN-padded at the front to one L (a series starts at its first observed value). NaN between
observed values is a gap, filled, never with zero (Krateo's input notebook fills gaps with 0.0,
which IBM advises against for TTM and which drags any model down): with the value at the same phase
of the nearest season, as seasonal naive would forecast it, or linearly when fewer than two seasons
are seen. On the gappy generated series that gave 0.79x seasonal naive's MASE after the model, where
linear filling gave 0.83x and a median seasonal profile 0.81x. NaN after the last observed value is
a late sample: the series is forecast from its last observation and the steps that fall inside L
are dropped, so every row's output starts right after position L. A row with no observed value is
bad input. At most the latest 2,048 points of a row are modelled.

Every series is standard-scaled (its observed mean and deviation) before the model and scaled back
after: IBM's guidance for TTM, and the theta optimiser converges faster on scaled values (twice as
fast on a 15-minute CPU series). A series that never goes below zero (CPU, memory, cost) is never
forecast below zero.

The season is `Options.season_length`, else derived per series: the lag of the highest peak of the
autocorrelation of the detrended series that is seen at least twice in the history (a daily cycle is
96 at 15 minutes, 24 hourly), moved to a calendar season a lag or two away when that one correlates
as well (noise shifts peaks); 24 when no cycle stands out (ACF below 0.3). Derived, the season did as
well as the true one (MASE 0.80x seasonal naive's against 0.81x); a fixed 24 gave 1.55x, as it
misses the daily cycle of 15-minute metrics.

The default model, chosen by measured accuracy (tests/bench/test_bench_forecaster.py, 114 generated
and carbon-intensity series, 512 points, 96 held back): the mean of statsforecast's
SeasonalWindowAverage over the last three seasons and DynamicOptimizedTheta, MASE 0.82x seasonal
naive's. Alone, the window average scored 0.92x, DynamicOptimizedTheta 0.89x, AutoTheta 0.90x, MSTL
0.90x and AutoETS 1.06x (at 380 ms a series: it drops seasons over 24); every one of them was 1.7x to
7x worse than seasonal naive on some family, the resized series (a level shift) worst. So every
series is backtested: the model forecasts the two windows before the end of the history from what
precedes them, and where its mean absolute error there exceeds seasonal naive's, the series gets
seasonal naive instead (no family then scored worse than seasonal naive over the benchmark's set, nor
5 % worse on any seed tried; a single series can, as a backtest is no promise). A history too short for a backtest keeps the model. Another model (TTM
later) plugs in as a `Model`: it gets the same prepared series and the same guard.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from functions.errors import FieldError, InvalidInput

__all__ = ["DEFAULT_HORIZON", "FALLBACK_SEASON", "MAX_CONTEXT", "Forecast", "Model", "Options", "derive_season", "fill_gaps",
           "handle", "seasonal_naive", "statistical"]

DEFAULT_HORIZON = 96
"""TTM r2's 512-96 checkpoint, which Krateo serves: 24 hours of 15-minute samples."""
FALLBACK_SEASON = 24
"""The season when none is asked and none stands out: a daily cycle of hourly samples."""
MAX_HORIZON = 10_000
MAX_SEASON = 10_000
SEASONS_AVERAGED = 3
BACKTEST_WINDOWS = 2
ACF_PEAK = 0.3
MIN_MODELLED = 4
MAX_CONTEXT = 2048
"""Points modelled at most, the latest: two weekly seasons of 15-minute samples (1,344) fit; older
points cost fit time and seldom help a 96-step forecast (TTM r2 reads at most 1,536)."""
CALENDAR_SEASONS = (4, 7, 12, 24, 48, 52, 96, 144, 168, 288, 336, 672, 1440)
"""Samples per day (24, 48, 96, 144, 288, 1440: 1 h to 1 min), per week (7, 168, 336, 672), per year (4, 12, 52)."""

Model = Callable[[Sequence[np.ndarray], Sequence[int], Sequence[int]], list[np.ndarray]]
"""A forecaster of prepared series: (scaled gap-free series, their seasons, their horizons) -> forecasts."""


@dataclass(frozen=True)
class Options:
    """What a request may choose: the horizon, and the season (None: derived per series)."""

    horizon: int = DEFAULT_HORIZON
    season_length: int | None = None

    def checked(self) -> Options:
        """Itself, or InvalidInput naming every bad option."""
        errors = []
        if not 1 <= self.horizon <= MAX_HORIZON:
            errors.append(FieldError("horizon", f"must be 1..{MAX_HORIZON}, got {self.horizon}"))
        if self.season_length is not None and not 1 <= self.season_length <= MAX_SEASON:
            errors.append(FieldError("season_length", f"must be 1..{MAX_SEASON}, got {self.season_length}"))
        if errors:
            raise InvalidInput("invalid forecast parameters", errors)
        return self


@dataclass(frozen=True)
class Forecast:
    """float32 [B, H] forecasts, with the season and the method kept for each series."""

    values: np.ndarray
    season_lengths: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Prepared:
    """One row made ready: the gap-free scaled series, how to scale back, the late steps to drop."""

    scaled: np.ndarray
    mean: float
    scale: float
    season: int
    late: int
    floor_at_zero: bool

    def unscaled(self, forecast: np.ndarray) -> np.ndarray:
        out = forecast * self.scale + self.mean
        return np.maximum(out, 0.0) if self.floor_at_zero else out


def handle(past_values: np.ndarray, options: Options | None = None, model: Model | None = None) -> Forecast:
    """Forecast every row of the batch; InvalidInput (naming every bad row) when it cannot be read."""
    opts = (options or Options()).checked()
    rows = _rows(past_values)
    prepared = [_prepare(row, opts.season_length) for row in rows]
    horizons = [opts.horizon + p.late for p in prepared]
    forecasts = _guarded(model or statistical, prepared, horizons)
    out = np.empty((len(prepared), opts.horizon), dtype=np.float32)
    methods = []
    for i, (p, (values, method)) in enumerate(zip(prepared, forecasts, strict=True)):
        out[i] = p.unscaled(values[p.late:])
        methods.append(method)
    return Forecast(out, [p.season for p in prepared], methods)


def _rows(past_values: np.ndarray) -> np.ndarray:
    """[B, L, 1] or [B, L] as float64 [B, L]; InvalidInput for any other shape or a row that cannot be used."""
    x = np.asarray(past_values)
    if x.ndim == 3 and x.shape[2] != 1:
        raise InvalidInput("past_values must hold one channel per series",
                           [FieldError("past_values.shape", f"[B, L, 1] or [B, L], got {list(x.shape)}: "
                                                            "several channels need a multivariate model")])
    if x.ndim not in (2, 3) or x.shape[0] < 1 or x.shape[1] < 1:
        raise InvalidInput("past_values must be shaped [B, L, 1] or [B, L]",
                           [FieldError("past_values.shape", f"got {list(x.shape)}")])
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InvalidInput("past_values must be numbers", [FieldError("past_values.datatype", str(x.dtype))])
    rows = x.reshape(x.shape[0], x.shape[1]).astype(np.float64)
    errors = []
    for i in np.flatnonzero(np.isinf(rows).any(axis=1)):
        errors.append(FieldError(f"past_values[{i}]", "holds an infinite value (missing values are NaN or null)"))
    for i in np.flatnonzero(np.isnan(rows).all(axis=1)):
        errors.append(FieldError(f"past_values[{i}]", "has no observed value"))
    if errors:
        raise InvalidInput(f"{len(errors)} of {rows.shape[0]} series cannot be forecast", errors)
    return rows


def _prepare(row: np.ndarray, season_length: int | None) -> _Prepared:
    observed = np.flatnonzero(~np.isnan(row))
    series = row[max(int(observed[0]), int(observed[-1]) + 1 - MAX_CONTEXT): observed[-1] + 1]  # padding, late samples off
    late = row.size - 1 - int(observed[-1])
    values = series[~np.isnan(series)]
    mean, std = float(values.mean()), float(values.std())
    scale = std if std > 1e-12 * max(1.0, abs(mean)) else 1.0
    scaled = (series - mean) / scale
    season = season_length or derive_season(fill_gaps(scaled, 1))
    return _Prepared(fill_gaps(scaled, season), mean, scale, season, late, bool(values.min() >= 0))


def fill_gaps(series: np.ndarray, season: int) -> np.ndarray:
    """`series` (NaN = gap; its first and last values observed) with every gap filled: from the same
    phase one season before (else after, else two or three seasons away), as seasonal naive would
    forecast it; linearly where no season is seen twice or no such value was observed."""
    gaps = np.isnan(series)
    if not gaps.any():
        return series.copy()
    index = np.arange(series.size)
    linear = series.copy()
    linear[gaps] = np.interp(index[gaps], index[~gaps], series[~gaps])
    if season < 2 or series.size < 2 * season:
        return linear
    filled = series.copy()
    for k in (-1, 1, -2, 2, -3, 3):
        todo = np.flatnonzero(np.isnan(filled))
        source = todo + k * season
        inside = (source >= 0) & (source < series.size)
        filled[todo[inside]] = series[source[inside]]  # still NaN where that source is a gap too
    left = np.isnan(filled)
    filled[left] = linear[left]
    return filled


def derive_season(series: np.ndarray) -> int:
    """The lag of the highest autocorrelation peak (>= 0.3, seen twice in the series), else 24."""
    n = series.size
    if n < 8:
        return FALLBACK_SEASON
    t = np.arange(n, dtype=np.float64)
    detrended = series - np.polyval(np.polyfit(t, series, 1), t)
    var = float(np.dot(detrended, detrended))
    if var <= 0.0:
        return FALLBACK_SEASON
    spectrum = np.fft.rfft(detrended, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: n // 2 + 1] / var  # biased: long lags count less
    lags = np.arange(2, n // 2)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] >= ACF_PEAK)]
    if not peaks.size:
        return FALLBACK_SEASON
    peak = int(peaks[np.argmax(acf[peaks])])
    near = [c for c in CALENDAR_SEASONS if abs(c - peak) <= max(1, round(0.03 * peak)) and c <= n // 2]
    best = max(near, key=lambda c: acf[c], default=peak)
    return best if acf[best] >= 0.9 * acf[peak] else peak  # noise moves a peak a lag or two off the calendar


def statistical(series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int]) -> list[np.ndarray]:
    """The default model: mean of the last-three-seasons average and DynamicOptimizedTheta, per series."""
    from statsforecast.models import DynamicOptimizedTheta, SeasonalWindowAverage

    out = []
    for y, m, h in zip(series, seasons, horizons, strict=True):
        usable = m if y.size >= 2 * m else 1  # a season seen once is no season to a model
        k = max(1, min(SEASONS_AVERAGED, y.size // usable))
        window = SeasonalWindowAverage(season_length=usable, window_size=k).forecast(y=y, h=h)["mean"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' and numpy's remarks on short or flat series
            theta = DynamicOptimizedTheta(season_length=usable).forecast(y=y, h=h)["mean"]
        out.append((np.asarray(window, dtype=np.float64) + np.asarray(theta, dtype=np.float64)) / 2.0)
    return out


def seasonal_naive(y: np.ndarray, season: int, horizon: int) -> np.ndarray:
    """The last season repeated (the last value when fewer than one season is seen)."""
    m = season if y.size >= season else 1
    return np.resize(y[-m:], horizon)


def _guarded(model: Model, prepared: Sequence[_Prepared], horizons: Sequence[int]) -> list[tuple[np.ndarray, str]]:
    """`model`'s forecasts, each replaced by seasonal naive where the backtest says it does worse, where
    the model fails or answers a non-finite value, or where the history is too short to model."""
    name = "window-average+theta" if model is statistical else getattr(model, "__name__", "model")
    out = [(seasonal_naive(p.scaled, p.season, h), "seasonal-naive (short history)")
           for p, h in zip(prepared, horizons, strict=True)]
    modelled = [i for i, p in enumerate(prepared) if p.scaled.size >= MIN_MODELLED]
    series = [prepared[i].scaled for i in modelled]
    seasons = [prepared[i].season for i in modelled]
    steps = [horizons[i] for i in modelled]
    errors = [_backtest(model, series, seasons, steps, w) for w in range(1, BACKTEST_WINDOWS + 1)]
    final = _safely(model, series, seasons, steps) if modelled else []
    for k, i in enumerate(modelled):
        scores = [score for e in errors if (score := e[k]) is not None]
        kept = final[k]
        if kept is None:
            out[i] = (out[i][0], "seasonal-naive (model failed)")
        elif scores and sum(ours for ours, _ in scores) > sum(naive for _, naive in scores):
            out[i] = (out[i][0], "seasonal-naive (backtest)")
        else:
            out[i] = (kept, name)
    return out


def _backtest(model: Model, series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int],
              window: int) -> list[tuple[float, float] | None]:
    """Per series, (model MAE, seasonal naive MAE) on the `window`-th window before the end, or None where
    the history is too short to leave two seasons before that window."""
    picked, cut = [], []
    for i, (y, m, h) in enumerate(zip(series, seasons, horizons, strict=True)):
        length = min(h, max(1, y.size // 4))
        train = y.size - window * length
        if train >= max(2 * m, 8):
            picked.append(i)
            cut.append((train, length))
    out: list[tuple[float, float] | None] = [None] * len(series)
    if not picked:
        return out
    forecasts = _safely(model, [series[i][:t] for i, (t, _) in zip(picked, cut, strict=True)],
                        [seasons[i] for i in picked], [n for _, n in cut])
    for i, (train, length), f in zip(picked, cut, forecasts, strict=True):
        actual = series[i][train: train + length]
        naive = seasonal_naive(series[i][:train], seasons[i], length)
        ours = math.inf if f is None else float(np.mean(np.abs(f - actual)))
        out[i] = (ours, float(np.mean(np.abs(naive - actual))))
    return out


def _safely(model: Model, series: Sequence[np.ndarray], seasons: Sequence[int],
            horizons: Sequence[int]) -> list[np.ndarray | None]:
    """The model's forecasts, None for a series whose forecast failed or is not finite: the batch is
    tried whole, and series by series only if it fails (one odd series must not fail the others)."""
    try:
        got = model(series, seasons, horizons)
        return [_finite(f, h) for f, h in zip(got, horizons, strict=True)]
    except Exception:  # noqa: BLE001 - a model's failure on odd data becomes seasonal naive, per series
        out: list[np.ndarray | None] = []
        for y, m, h in zip(series, seasons, horizons, strict=True):
            try:
                out.append(_finite(model([y], [m], [h])[0], h))
            except Exception:  # noqa: BLE001
                out.append(None)
        return out


def _finite(forecast: np.ndarray, horizon: int) -> np.ndarray | None:
    values = np.asarray(forecast, dtype=np.float64)
    return values if values.shape == (horizon,) and np.isfinite(values).all() else None
