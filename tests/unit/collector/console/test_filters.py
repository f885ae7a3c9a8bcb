"""How the console writes numbers, ages and money: exact, never an exponent or a float."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.api.console.filters import age, money, quantity, signed, when


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0, "0"),
        (Decimal("1E+3"), "1,000"),
        (Decimal("85500"), "85,500"),
        (Decimal("2.50"), "2.5"),
        (Decimal("0.000001"), "0.000001"),
        (12345678901234, "12,345,678,901,234"),
    ],
)
def test_quantities_are_exact(value: object, text: str) -> None:
    assert quantity(value) == text  # type: ignore[arg-type]


def test_differences_carry_their_sign() -> None:
    assert [signed(Decimal(v)) for v in ("3", "-1", "0")] == ["+3", "-1", "0"]
    assert signed(None) == "—"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (42.9, "42 s"),
        (3600, "1 h"),
        (5 * 3600 + 720, "5 h 12 min"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
    ],
)
def test_ages_show_the_two_largest_units(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


def test_money_is_read_from_the_smallest_unit() -> None:
    assert money(4700, "usd") == "$47.00"
    assert money(-5, "eur") == "-€0.05"
    assert money(123456, "chf") == "1,234.56 CHF"
    assert money(None) == "—"


def test_times_are_utc_minutes() -> None:
    assert when(datetime(2026, 3, 1, 12, 5, 59, tzinfo=UTC)) == "2026-03-01 12:05 UTC"
    assert when(None) == "—"
