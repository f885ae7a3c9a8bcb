"""Invoice line descriptions, worded as Stripe words a subscription item's line.

Stripe names a line after the price's **product**, never the price's nickname: the quantity, a
multiplication sign (U+00D7, written x here), the product name and the unit price, as in
"8 x IoT platform usage: devices (at $5.00 / month)". The quantity is the billed one (after
``transform_quantity``), so quantity times unit price is the line's amount. Stripe splits a
graduated tiered price into one line per tier (``Product (Tier 1 at $0.00 / month)``); the
sandbox keeps one line per item, worded without a unit price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

TIMES = "\N{MULTIPLICATION SIGN}"
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "pyg", "ugx", "xaf", "xof"}


def money(minor_units: Decimal, currency: str) -> str:
    """``$5.00``, ``$0.001`` or ``¥500``: at least the currency's decimals, more when needed."""
    code = currency.lower()
    value = minor_units if code in ZERO_DECIMAL else minor_units / 100
    places = 0 if code in ZERO_DECIMAL else 2
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        places = -exponent
    symbol = SYMBOLS.get(code, code.upper() + " ")
    return f"{symbol}{value:,.{places}f}"


def cadence(recurring: dict[str, Any] | None) -> str:
    """``/ month``, or ``every 3 months`` for a longer interval."""
    if not recurring:
        return ""
    interval = str(recurring.get("interval") or "month")
    count = int(recurring.get("interval_count") or 1)
    return f"/ {interval}" if count == 1 else f"every {count} {interval}s"


def describe(quantity: int, price: dict[str, Any], product: dict[str, Any]) -> str:
    """The line's ``description`` for ``quantity`` billed units of ``price``."""
    name = product.get("name") or price["id"]
    if price.get("billing_scheme") == "tiered":
        return f"{quantity} {TIMES} {name}"
    unit = Decimal(str(price.get("unit_amount_decimal") or 0))
    at = f"{money(unit, str(price['currency']))} {cadence(price.get('recurring'))}".strip()
    return f"{quantity} {TIMES} {name} (at {at})"
