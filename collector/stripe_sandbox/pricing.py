"""Price arithmetic: transform_quantity, per-unit and tiered (graduated or volume) amounts."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def transform(quantity: int, transform_quantity: dict[str, Any] | None) -> int:
    """Apply ``transform_quantity`` (divide, then round up or down) to a usage total."""
    if not transform_quantity:
        return quantity
    divide_by = int(transform_quantity["divide_by"])
    if transform_quantity.get("round") == "up":
        return math.ceil(quantity / divide_by) if quantity >= 0 else -((-quantity) // divide_by)
    return quantity // divide_by if quantity >= 0 else -math.ceil(-quantity / divide_by)


def _cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _tier_parts(tier: dict[str, Any]) -> tuple[Decimal, Decimal]:
    unit = tier.get("unit_amount_decimal") or tier.get("unit_amount") or 0
    flat = tier.get("flat_amount_decimal") or tier.get("flat_amount") or 0
    return Decimal(str(unit)), Decimal(str(flat))


def amount(price: dict[str, Any], quantity: int) -> int:
    """The line amount in the currency's minor unit for ``quantity`` priced units."""
    if price["billing_scheme"] != "tiered":
        return _cents(Decimal(str(price.get("unit_amount_decimal") or 0)) * quantity)
    tiers: list[dict[str, Any]] = price.get("tiers") or []
    if price.get("tiers_mode") == "volume":
        for tier in tiers:
            up_to = tier.get("up_to")
            if up_to is None or quantity <= int(up_to):
                unit, flat = _tier_parts(tier)
                return _cents(unit * quantity + (flat if quantity > 0 else 0))
        return 0
    total = Decimal(0)
    lower = 0
    for tier in tiers:
        up_to = tier.get("up_to")
        upper = quantity if up_to is None else min(quantity, int(up_to))
        if upper <= lower:
            break
        unit, flat = _tier_parts(tier)
        total += unit * (upper - lower) + flat
        if up_to is None or quantity <= int(up_to):
            break
        lower = int(up_to)
    return _cents(total)


def parse_tiers(raw: Any) -> list[dict[str, Any]]:
    """Tiers from form params, ``up_to=inf`` last; amounts kept as Stripe returns them."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("tiers must be a non-empty list")
    tiers: list[dict[str, Any]] = []
    for index, tier in enumerate(raw):
        if not isinstance(tier, dict) or "up_to" not in tier:
            raise ValueError(f"tiers[{index}][up_to]")
        up_to = None if str(tier["up_to"]) == "inf" else int(tier["up_to"])
        if up_to is None and index != len(raw) - 1:
            raise ValueError(f"tiers[{index}][up_to]")
        unit = tier.get("unit_amount_decimal", tier.get("unit_amount"))
        flat = tier.get("flat_amount_decimal", tier.get("flat_amount"))
        tiers.append(
            {
                "flat_amount": _whole(flat),
                "flat_amount_decimal": None if flat is None else str(Decimal(str(flat))),
                "unit_amount": _whole(unit),
                "unit_amount_decimal": None if unit is None else str(Decimal(str(unit))),
                "up_to": up_to,
            }
        )
    if tiers[-1]["up_to"] is not None:
        raise ValueError(f"tiers[{len(raw) - 1}][up_to]")
    return tiers


def _whole(value: Any) -> int | None:
    if value is None:
        return None
    number = Decimal(str(value))
    return int(number) if number == number.to_integral_value() else None
