"""The FOCUS cell rules every ingest path shares (functions.codecs.focus_values), cell by cell.

Cases: null literals (empty, NULL, null) are nulls in text, numbers and timestamps, padded ones in
numbers and timestamps only (text is kept byte for byte); numbers in plain and exponent notation,
spaces around allowed; currency symbols, thousands and decimal commas, words, NaN, Inf and overflow
rejected; timestamps in RFC 3339 / ISO 8601 with Z, offsets with and without a colon, no zone (UTC),
a space for T, minutes only, fractions, plain dates; locale dates and impossible dates (2025-02-29,
which a parser would roll over into March) rejected; the reason a user reads
names the column, the value and the rule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest

from functions.codecs import focus_values


def one_number(text: Any) -> tuple[float | None, bool]:
    values, wrong = focus_values.numbers(pa.array([text], pa.string()))
    return values[0].as_py(), bool(wrong[0].as_py())


def one_time(text: Any) -> tuple[datetime | None, bool]:
    values, wrong = focus_values.timestamps(pa.array([text], pa.string()))
    return values[0].as_py(), bool(wrong[0].as_py())


@pytest.mark.parametrize("cell", ["", "NULL", "null", None])
def test_null_literals_are_null_in_every_type(cell: Any) -> None:
    assert focus_values.nulls(pa.array([cell], pa.string()))[0].as_py() is None
    assert one_number(cell) == (None, False)
    assert one_time(cell) == (None, False)


def test_text_is_kept_exactly_but_for_the_literals() -> None:
    cells = ["a", " NULL", "Null", "NULLS", "", "null", "  "]
    assert focus_values.nulls(pa.array(cells)).to_pylist() == ["a", " NULL", "Null", "NULLS", None, None, "  "]


@pytest.mark.parametrize("cell", [" NULL ", "  ", "\tnull"])
def test_padded_literals_are_null_in_numbers_and_times(cell: str) -> None:
    assert one_number(cell) == (None, False)
    assert one_time(cell) == (None, False)


@pytest.mark.parametrize(("cell", "value"), [
    ("12", 12.0), ("-0.5", -0.5), (".25", 0.25), ("1.", 1.0), ("1.2E-3", 0.0012), ("+3e2", 300.0), (" 7 ", 7.0),
    ("0", 0.0), ("-0.0000001", -1e-7),
])
def test_focus_numbers(cell: str, value: float) -> None:
    assert one_number(cell) == (value, False)


@pytest.mark.parametrize("cell", ["$10,000.00 ", "10,000.00", "1.234,56", "1,5", "12 euros", "EUR 12", "NaN", "inf",
                                  "-Infinity", "1e999", "0x1A", "1_000", "--1", "1e", "."])
def test_non_focus_numbers_are_rejected(cell: str) -> None:
    assert one_number(cell) == (None, True)


@pytest.mark.parametrize(("cell", "expected"), [
    ("2025-04-01T00:00:00Z", datetime(2025, 4, 1)),
    ("2025-04-01T02:00:00+02:00", datetime(2025, 4, 1)),
    ("2025-04-01T02:00:00+0200", datetime(2025, 4, 1)),
    ("2025-03-31T19:00:00-05:00", datetime(2025, 4, 1)),
    ("2025-04-01T00:00:00", datetime(2025, 4, 1)),
    ("2025-04-01 00:00:00", datetime(2025, 4, 1)),
    ("2025-04-01T00:00Z", datetime(2025, 4, 1)),
    ("2025-04-01t00:00:00z", datetime(2025, 4, 1)),
    ("2025-04-01T00:00:00.123456Z", datetime(2025, 4, 1, 0, 0, 0, 123000)),
    ("2025-04-01", datetime(2025, 4, 1)),
    ("2024-02-29", datetime(2024, 2, 29)),
    ("2025-04-01T00:30:00+01:00", datetime(2025, 3, 31, 23, 30)),
])
def test_iso_timestamps(cell: str, expected: datetime) -> None:
    assert one_time(cell) == (expected, False)


@pytest.mark.parametrize("cell", ["4/1/25", "04/01/2025", "01.04.2025", "1 April 2025", "2025-13-01", "yesterday",
                                  "1743465600", "2025-02-29", "2025-04-31T00:00:00Z", "2025-02-30T10:00:00+02:00"])
def test_locale_and_other_dates_are_rejected(cell: str) -> None:
    assert one_time(cell) == (None, True)


def test_the_reason_names_the_column_the_value_and_the_rule() -> None:
    why = focus_values.describe("BilledCost", "$10,000.00 ", "number")
    assert why.startswith("BilledCost: '$10,000.00 ' is not a number") and "thousands separators" in why
    assert "ISO 8601" in focus_values.describe("BillingPeriodStart", "4/1/25", "timestamp")
