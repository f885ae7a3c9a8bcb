"""Validating price creation parameters: schemes, tiers, recurring usage and meters."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from collector.stripe_sandbox import aggregation, errors, params, pricing
from collector.stripe_sandbox.state import Store

INTERVALS = ("day", "week", "month", "year")


def parse_price(store: Store, p: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
    """The scheme, amounts, tiers, recurring and transform fields of a new price.

    ``legacy`` is a pinned API version before 2025-03-31.basil: only there may a metered
    price use ``aggregate_usage`` without a meter.
    """
    billing_scheme = params.choice(p, "billing_scheme", ("per_unit", "tiered"), "per_unit")
    recurring = _recurring(store, p.get("recurring"), legacy=legacy)
    transform = _transform(p.get("transform_quantity"))
    tiers_mode = None
    tiers = None
    unit_amount_decimal = None
    if billing_scheme == "tiered":
        tiers_mode = params.choice(p, "tiers_mode", ("graduated", "volume"), None)
        if tiers_mode is None:
            raise errors.missing_param("tiers_mode")
        if transform is not None:
            raise errors.invalid(
                "You cannot use `transform_quantity` with tiered prices.",
                param="transform_quantity",
            )
        try:
            tiers = pricing.parse_tiers(params.required(p, "tiers"))
        except ValueError as exc:
            raise errors.invalid(f"Invalid tiers: {exc}", param="tiers") from exc
    else:
        raw = p.get("unit_amount_decimal", p.get("unit_amount"))
        if raw is None:
            raise errors.missing_param("unit_amount")
        if "unit_amount" in p:
            params.integer(p, "unit_amount")
        try:
            unit_amount_decimal = str(Decimal(str(raw)).normalize())
        except InvalidOperation as exc:
            raise errors.invalid(f"Invalid decimal: {raw}", param="unit_amount_decimal") from exc
        if "E" in unit_amount_decimal:
            unit_amount_decimal = str(int(Decimal(unit_amount_decimal)))
    return {
        "unit_amount_decimal": unit_amount_decimal,
        "billing_scheme": billing_scheme,
        "tiers_mode": tiers_mode,
        "tiers": tiers,
        "recurring": recurring,
        "transform_quantity": transform,
    }


def _recurring(store: Store, raw: Any, *, legacy: bool) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid hash", param="recurring")
    interval = params.choice(raw, "interval", INTERVALS, None)
    if interval is None:
        raise errors.missing_param("recurring[interval]")
    usage_type = params.choice(raw, "usage_type", ("licensed", "metered"), "licensed")
    meter_id = raw.get("meter") or None
    result: dict[str, Any] = {
        "interval": interval,
        "interval_count": params.integer(raw, "interval_count", 1),
        "meter": meter_id,
        "trial_period_days": None,
        "usage_type": usage_type,
    }
    if "aggregate_usage" in raw:
        if not legacy:
            raise errors.unknown_param("recurring[aggregate_usage]")
        if usage_type != "metered":
            raise errors.invalid(
                "aggregate_usage is only valid for metered prices.",
                param="recurring[aggregate_usage]",
            )
        params.choice(raw, "aggregate_usage", aggregation.LEGACY_AGGREGATIONS, None)
    if legacy and usage_type == "metered" and meter_id is None:
        result["aggregate_usage"] = raw.get("aggregate_usage", "sum")
    if meter_id is not None:
        if usage_type != "metered":
            raise errors.invalid(
                "A meter can only be attached to a metered price.", param="recurring[meter]"
            )
        meter = store.meters.get(meter_id)
        if meter is None:
            raise errors.no_such("billing.meter", meter_id, "recurring[meter]")
        if meter["status"] != "active":
            raise errors.invalid("The meter is inactive.", param="recurring[meter]")
    elif usage_type == "metered" and not legacy:
        raise errors.invalid(
            "Metered prices must be backed by a meter. Pass `recurring[meter]`.",
            param="recurring[meter]",
        )
    return result


def _transform(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid hash", param="transform_quantity")
    divide_by = params.integer(raw, "divide_by")
    if divide_by is None or divide_by < 1:
        raise errors.missing_param("transform_quantity[divide_by]")
    rounding = params.choice(raw, "round", ("up", "down"), None)
    if rounding is None:
        raise errors.missing_param("transform_quantity[round]")
    return {"divide_by": divide_by, "round": rounding}
