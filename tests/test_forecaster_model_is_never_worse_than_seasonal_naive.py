"""The forecaster's pure forecasting (functions/stages/forecaster/forecast.py), without a server.

Cases (skipped when the forecast extra is not installed):
- accuracy: on generated metric series with a held-back window (tests/forecast_series.py: 15-minute
  office CPU, hourly weekly cycles, growth, a resize, flat, random walk, spikes; half with gaps) and the
  carbon-intensity regions, the default's mean MASE is below 0.9x seasonal naive's, and no family is
  more than 5 % worse than seasonal naive (the backtest guard sends the resized series to it);
- the guard: a model that is far off, one that raises, one that answers NaN: every series gets
  seasonal naive, named as such; a model that is right is kept;
- shapes: [B, L, 1] and [B, L] give the same forecast, output [B, H] float32; several channels, 1-D,
  an empty batch, text, an infinite value or a row with no observed value are InvalidInput naming
  every bad row; horizon and season out of range are InvalidInput;
- rows: NaN at the front is padding (a padded row forecasts as the row alone); a row longer than
  2,048 points forecasts as its latest 2,048; NaN at the end is a late sample (the output still starts after position L); gaps are filled from the same phase of the
  nearest season, never with zero, better than linear interpolation on block gaps, and a series
  with gaps forecasts close to the same series without them;
- scaling: a*x + b forecasts as a*forecast(x) + b (per-series scaling), bytes-sized values included;
  a series that never goes below zero is never forecast below zero;
- season: derived as 96 on 15-minute daily cycles and 24 on hourly ones, 24 on white noise; the same
  batch gives the same forecast twice.
"""

from __future__ import annotations

import pytest
from forecaster_server import EXTRA_MISSING

if EXTRA_MISSING:
    pytest.skip(EXTRA_MISSING, allow_module_level=True)

from collections.abc import Sequence  # noqa: E402

import numpy as np  # noqa: E402
from forecast_series import FAMILIES, Case, _series, carbon_cases, cases, mase, seasonal_naive, with_gaps  # noqa: E402

from functions.errors import InvalidInput  # noqa: E402
from functions.stages.forecaster import forecast  # noqa: E402

H = 96


def _family(case: Case) -> str:
    return "carbon" if case.name.startswith("carbon") else case.name.rsplit("-", 1)[0].removesuffix("-gaps")


@pytest.fixture(scope="module")
def scored() -> list[tuple[Case, float, float]]:
    """(case, default's MASE, seasonal naive's MASE) for a seed the model was not chosen on."""
    series = cases(seed=7, per_family=6) + carbon_cases()
    got = forecast.handle(np.stack([c.history for c in series])[:, :, None].astype(np.float32))
    assert got.values.shape == (len(series), H) and got.values.dtype == np.float32
    return [(c, mase(f, c), mase(seasonal_naive(c, H), c)) for c, f in zip(series, got.values, strict=True)]


def test_the_default_beats_seasonal_naive_over_all_series(scored: list[tuple[Case, float, float]]) -> None:
    ours = np.mean([s for _, s, _ in scored])
    naive = np.mean([n for _, _, n in scored])
    assert ours < 0.9 * naive, f"default MASE {ours:.3f} vs seasonal naive {naive:.3f}"


@pytest.mark.parametrize("family", [*FAMILIES, "carbon"])
def test_no_family_is_worse_than_seasonal_naive(scored: list[tuple[Case, float, float]], family: str) -> None:
    ours = np.mean([s for c, s, _ in scored if _family(c) == family])
    naive = np.mean([n for c, _, n in scored if _family(c) == family])
    assert ours <= 1.05 * naive, f"{family}: default MASE {ours:.3f} vs seasonal naive {naive:.3f}"


def _office(n: int = 512, per_day: int = 96, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 40 + 30 * np.sin(2 * np.pi * t / per_day) + rng.normal(0, 2, n)


def _far_off(series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int]) -> list[np.ndarray]:
    return [np.full(h, 1e3) for h in horizons]


def _raises(series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int]) -> list[np.ndarray]:
    raise RuntimeError("this model cannot fit")


def _nan(series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int]) -> list[np.ndarray]:
    return [np.full(h, np.nan) for h in horizons]


def _sine_and_trend(series: Sequence[np.ndarray], seasons: Sequence[int], horizons: Sequence[int]) -> list[np.ndarray]:
    """The right model for the series these tests feed it: a daily sine on a linear trend, fitted by least squares."""
    def basis(t: np.ndarray) -> np.ndarray:
        return np.stack([np.sin(2 * np.pi * t / 96), np.cos(2 * np.pi * t / 96), np.ones_like(t), t], axis=1)
    out = []
    for y, h in zip(series, horizons, strict=True):
        coef, *_ = np.linalg.lstsq(basis(np.arange(y.size, dtype=float)), y, rcond=None)
        out.append(basis(np.arange(y.size, y.size + h, dtype=float)) @ coef)
    return out


@pytest.mark.parametrize(("model", "method"), [(_far_off, "seasonal-naive (backtest)"), (_raises, "seasonal-naive (model failed)"),
                                               (_nan, "seasonal-naive (model failed)")], ids=["far-off", "raises", "nan"])
def test_a_model_that_does_worse_or_fails_gives_way_to_seasonal_naive(model: forecast.Model, method: str) -> None:
    batch = np.stack([_office(seed=1), _office(seed=2)])
    got = forecast.handle(batch, forecast.Options(season_length=96), model=model)
    assert got.methods == [method, method]
    for row, values in zip(batch, got.values, strict=True):
        assert np.allclose(values, row[-96:], atol=1e-3)


def test_a_model_that_is_right_is_kept() -> None:
    t = np.arange(512 + 96)
    truth = 50 + 10 * np.sin(2 * np.pi * t / 96) + 0.05 * t  # seasonal naive misses the trend
    got = forecast.handle(truth[None, :512], forecast.Options(season_length=96), model=_sine_and_trend)
    assert got.methods == ["_sine_and_trend"]
    assert np.allclose(got.values[0], truth[512:], atol=1e-3)


def test_three_dimensional_and_two_dimensional_batches_forecast_the_same() -> None:
    batch = np.stack([_office(seed=s) for s in range(3)]).astype(np.float32)
    flat = forecast.handle(batch)
    krateo = forecast.handle(batch[:, :, None])
    assert krateo.values.shape == (3, H) and np.array_equal(flat.values, krateo.values)
    assert flat.season_lengths == [96, 96, 96]


@pytest.mark.parametrize(("tensor", "where"), [
    (np.zeros((2, 10, 2)), "past_values.shape"),
    (np.zeros(10), "past_values.shape"),
    (np.zeros((0, 10)), "past_values.shape"),
    (np.array([["a", "b"]]), "past_values.datatype"),
], ids=["two-channels", "one-dimension", "empty-batch", "text"])
def test_a_tensor_of_another_shape_or_type_is_invalid_input(tensor: np.ndarray, where: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        forecast.handle(tensor)
    assert [e.loc for e in caught.value.errors] == [where]


def test_every_unusable_row_is_named() -> None:
    batch = np.stack([_office(), np.full(512, np.nan), _office(seed=4), _office(seed=5)])
    batch[3, 7] = np.inf
    with pytest.raises(InvalidInput) as caught:
        forecast.handle(batch)
    found = {e.loc: e.msg for e in caught.value.errors}
    assert found == {"past_values[1]": "has no observed value",
                     "past_values[3]": "holds an infinite value (missing values are NaN or null)"}
    assert "2 of 4 series" in caught.value.message


@pytest.mark.parametrize("options", [forecast.Options(horizon=0), forecast.Options(horizon=10_001),
                                     forecast.Options(season_length=0)], ids=["horizon-0", "horizon-huge", "season-0"])
def test_options_out_of_range_are_invalid_input(options: forecast.Options) -> None:
    with pytest.raises(InvalidInput):
        forecast.handle(_office()[None, :], options)


def test_front_padding_is_not_part_of_the_series() -> None:
    short = _office(n=300, seed=8)
    padded = np.concatenate([np.full(212, np.nan), short])
    together = forecast.handle(np.stack([_office(seed=9), padded]))
    alone = forecast.handle(short[None, :])
    assert np.array_equal(together.values[1], alone.values[0])
    assert together.season_lengths[1] == alone.season_lengths[0]


def test_a_long_row_is_modelled_on_its_latest_points() -> None:
    long = _office(n=5000, seed=16)
    got = forecast.handle(long[None, :], forecast.Options(season_length=96))
    latest = forecast.handle(long[None, -forecast.MAX_CONTEXT:], forecast.Options(season_length=96))
    assert forecast.MAX_CONTEXT == 2048 and np.array_equal(got.values, latest.values)


def test_late_samples_keep_the_output_after_position_l() -> None:
    full = _office(n=512, seed=10)
    late = full.copy()
    late[-5:] = np.nan
    got = forecast.handle(late[None, :], forecast.Options(horizon=H, season_length=96))
    longer = forecast.handle(full[None, :-5], forecast.Options(horizon=H + 5, season_length=96))
    assert got.values.shape == (1, H)
    assert np.array_equal(got.values[0], longer.values[0][5:])


def test_gaps_are_filled_from_the_nearest_season_never_with_zero() -> None:
    x = _office(n=480, seed=11)
    gapped = x.copy()
    gapped[200:230] = np.nan
    filled = forecast.fill_gaps(gapped, 96)
    assert np.array_equal(filled[200:230], x[104:134]), "one season before, same phase"
    assert np.array_equal(filled[~np.isnan(gapped)], x[~np.isnan(gapped)])
    first_season = x.copy()
    first_season[10:20] = np.nan
    assert np.array_equal(forecast.fill_gaps(first_season, 96)[10:20], x[106:116]), "one season after"
    assert filled.min() > 0


def test_seasonal_gap_filling_beats_linear_interpolation_on_block_gaps() -> None:
    rng = np.random.default_rng(5)
    linear, seasonal = [], []
    for family in FAMILIES:
        for _ in range(4):
            x, season = _series(rng, family, 512)
            gapped = with_gaps(rng, x, rate=0.05, blocks=3, block_len=(4, 60))
            gapped[0] = x[0]
            missing = np.isnan(gapped)
            linear.append(np.mean(np.abs(forecast.fill_gaps(gapped, 1)[missing] - x[missing])))
            seasonal.append(np.mean(np.abs(forecast.fill_gaps(gapped, season)[missing] - x[missing])))
    assert np.mean(seasonal) < 0.85 * np.mean(linear), (np.mean(seasonal), np.mean(linear))


def test_a_series_with_gaps_forecasts_close_to_the_series_without() -> None:
    rng = np.random.default_rng(12)
    x, _ = _series(rng, "office-15m", 512)
    gapped = with_gaps(rng, x, rate=0.05, blocks=2, block_len=(8, 24))
    got = forecast.handle(np.stack([x, gapped]), forecast.Options(season_length=96)).values
    assert np.mean(np.abs(got[0] - got[1])) < 0.1 * np.std(x)


def test_forecasts_scale_with_each_series() -> None:
    x = _office(seed=13)
    batch = np.stack([x, 3e9 * x + 7e10, -x])
    got = forecast.handle(batch, forecast.Options(season_length=96)).values.astype(np.float64)
    assert np.allclose(got[1], 3e9 * got[0] + 7e10, rtol=1e-5)
    assert np.allclose(got[2], -got[0], atol=1e-4)


def test_a_series_never_below_zero_is_never_forecast_below_zero() -> None:
    t = np.arange(512)
    falling = np.maximum(0.0, 100 - t * 0.25) + (t % 96 < 8) * 5.0  # heading to zero, a small daily burst
    got = forecast.handle(falling[None, :], forecast.Options(season_length=96))
    assert got.values.min() >= 0.0


@pytest.mark.parametrize(("per_day", "season"), [(96, 96), (24, 24)], ids=["15-minute", "hourly"])
def test_the_season_is_derived_from_the_series(per_day: int, season: int) -> None:
    assert forecast.derive_season(_office(n=512, per_day=per_day)) == season


def test_no_season_in_white_noise_falls_back_to_24() -> None:
    noise = np.random.default_rng(14).normal(size=512)
    assert forecast.derive_season(noise) == forecast.FALLBACK_SEASON == 24


def test_the_same_batch_gives_the_same_forecast() -> None:
    batch = np.stack([c.history for c in cases(seed=15, per_family=1)])
    first, second = forecast.handle(batch), forecast.handle(batch)
    assert np.array_equal(first.values, second.values) and first.methods == second.methods
