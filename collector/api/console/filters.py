"""How the console's templates write times, ages, quantities and money."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from collector.api.console.usage_chart import number

DASH = "—"
CURRENCY_SIGNS = {"usd": "$", "eur": "€", "gbp": "£"}


def when(moment: datetime | None) -> str:
    """``2026-03-01 12:00 UTC``; a dash for nothing."""
    return DASH if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def age(seconds: float | None) -> str:
    """``3 d 4 h``, ``5 h 12 min``, ``42 s``: the two largest units."""
    if seconds is None:
        return DASH
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size} {unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def quantity(value: Decimal | int | float | None) -> str:
    """A whole or decimal number with thousands separators; a dash for nothing measured."""
    if value is None:
        return DASH
    return number(Decimal(str(value)))


def signed(value: Decimal | None) -> str:
    """A difference with its sign: ``+3``, ``-1``, ``0``."""
    if value is None:
        return DASH
    text = number(value)
    return f"+{text}" if value > 0 else text


def money(cents: int | None, currency: str = "usd") -> str:
    """``$12.34`` from Stripe's smallest unit (two decimals for the currencies it lists)."""
    if cents is None:
        return DASH
    sign = "-" if cents < 0 else ""
    whole = Decimal(abs(cents)) / 100
    symbol = CURRENCY_SIGNS.get(currency.lower())
    amount = f"{whole:,.2f}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


FILTERS: dict[str, Any] = {
    "when": when,
    "age": age,
    "quantity": quantity,
    "signed": signed,
    "money": money,
}
