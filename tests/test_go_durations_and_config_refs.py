"""Go durations parse like Go's time.ParseDuration; config references are read from any event shape.

Cases: 1h30m, 90s, 500ms, 1.5h, 0, -1m; invalid strings named; canonical formatting; ConfigRef from
PingSource data, from a CR body, from {config}, from a subject; an event naming nothing is refused.
"""

from __future__ import annotations

import pytest

from functions.errors import InvalidInput
from functions.models.durations import format_go_duration, parse_go_duration
from functions.models.refs import ConfigRef


@pytest.mark.parametrize(
    "text, seconds",
    [("1h30m", 5400), ("90s", 90), ("500ms", 0.5), ("1.5h", 5400), ("0", 0), ("-1m", -60), ("12h30m", 45000), ("1h0m0s", 3600)],
    ids=["1h30m", "90s", "500ms", "fraction", "zero", "negative", "12h30m", "canonical"],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "1h 30m"], ids=["empty", "days", "no-number", "no-unit", "space"])
def test_invalid_durations_are_named(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_canonical_format() -> None:
    assert [format_go_duration(s) for s in (3600, 90, 0.5, 45000)] == ["1h0m0s", "1m30s", "500ms", "12h30m0s"]


@pytest.mark.parametrize(
    "subject, data, expected",
    [
        (None, {"kind": "ScraperConfig", "namespace": "n", "name": "s"}, "ScraperConfig/n/s"),
        (None, {"kind": "ExporterScraperConfig", "metadata": {"name": "e", "namespace": "n"}}, "ExporterScraperConfig/n/e"),
        (None, {"config": "ExporterScraperConfig/n/e"}, "ExporterScraperConfig/n/e"),
        ("ScraperConfig/n/s", None, "ScraperConfig/n/s"),
    ],
    ids=["ping-data", "cr-body", "config-field", "subject"],
)
def test_config_refs_from_events(subject: str | None, data: object, expected: str) -> None:
    assert str(ConfigRef.from_event(subject, data)) == expected


def test_an_event_naming_no_config_is_refused() -> None:
    with pytest.raises(InvalidInput):
        ConfigRef.from_event(None, {"hello": "world"})
