"""Builders for catalogue objects, with exactly the top-level fields Stripe returns.

The field sets follow stripe-mock's fixtures (checked by a test against fixtures3.json).
"""

from __future__ import annotations

import copy
from typing import Any

# Fields Stripe only returns when expanded: stored on the object, stripped when rendered.
HIDDEN_PRICE_FIELDS = ("tiers",)


def customer(
    object_id: str, created: int, params: dict[str, Any], invoice_prefix: str
) -> dict[str, Any]:
    return {
        "address": params.get("address"),
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": params.get("description"),
        "discount": None,
        "email": params.get("email"),
        "id": object_id,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
        "name": params.get("name"),
        "next_invoice_sequence": 1,
        "object": "customer",
        "phone": params.get("phone"),
        "preferred_locales": list(params.get("preferred_locales") or []),
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def product(object_id: str, created: int, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "active": params.get("active", "true") != "false",
        "created": created,
        "default_price": None,
        "description": params.get("description"),
        "id": object_id,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": dict(params.get("metadata") or {}),
        "name": params.get("name"),
        "object": "product",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": params.get("statement_descriptor"),
        "tax_code": None,
        "type": "service",
        "unit_label": params.get("unit_label"),
        "updated": created,
        "url": None,
    }


def price(
    object_id: str,
    created: int,
    *,
    product_id: str,
    currency: str,
    unit_amount_decimal: str | None,
    billing_scheme: str,
    tiers_mode: str | None,
    tiers: list[dict[str, Any]] | None,
    recurring: dict[str, Any] | None,
    transform_quantity: dict[str, Any] | None,
    lookup_key: str | None,
    nickname: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    unit_amount = None
    if unit_amount_decimal is not None and float(unit_amount_decimal).is_integer():
        unit_amount = int(float(unit_amount_decimal))
    return {
        "active": True,
        "billing_scheme": billing_scheme,
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "id": object_id,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": nickname,
        "object": "price",
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers": tiers,
        "tiers_mode": tiers_mode,
        "transform_quantity": transform_quantity,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal,
    }


def render_price(stored: dict[str, Any], expand: list[str], prefix: str = "") -> dict[str, Any]:
    """The price as Stripe answers it: ``tiers`` only when expanded."""
    shown = copy.deepcopy(stored)
    for name in HIDDEN_PRICE_FIELDS:
        if f"{prefix}{name}" not in expand:
            shown.pop(name, None)
    return shown


def plan(stored_price: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` view of a recurring price, as nested in subscription items."""
    recurring = stored_price.get("recurring") or {}
    transform = stored_price.get("transform_quantity")
    result = {
        "active": stored_price["active"],
        "amount": stored_price["unit_amount"],
        "amount_decimal": stored_price["unit_amount_decimal"],
        "billing_scheme": stored_price["billing_scheme"],
        "created": stored_price["created"],
        "currency": stored_price["currency"],
        "id": stored_price["id"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": stored_price["metadata"],
        "meter": recurring.get("meter"),
        "nickname": stored_price["nickname"],
        "object": "plan",
        "product": stored_price["product"],
        "tiers_mode": stored_price["tiers_mode"],
        "transform_usage": dict(transform) if transform else None,
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type"),
    }
    if "aggregate_usage" in recurring:
        result["aggregate_usage"] = recurring["aggregate_usage"]
    return result


def meter(object_id: str, created: int, params: dict[str, Any], formula: str) -> dict[str, Any]:
    mapping = params.get("customer_mapping") or {}
    value_settings = params.get("value_settings") or {}
    return {
        "created": created,
        "customer_mapping": {
            "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
            "type": mapping.get("type", "by_id"),
        },
        "default_aggregation": {"formula": formula},
        "display_name": params.get("display_name"),
        "event_name": params.get("event_name"),
        "event_time_window": params.get("event_time_window"),
        "id": object_id,
        "livemode": False,
        "object": "billing.meter",
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": created,
        "value_settings": {"event_payload_key": value_settings.get("event_payload_key", "value")},
    }


def meter_event(
    *, created: int, event_name: str, identifier: str, payload: dict[str, str], timestamp: int
) -> dict[str, Any]:
    return {
        "created": created,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "object": "billing.meter_event",
        "payload": payload,
        "timestamp": timestamp,
    }


def meter_event_summary(
    *, object_id: str, meter_id: str, start: int, end: int, value: float
) -> dict[str, Any]:
    return {
        "aggregated_value": int(value) if float(value).is_integer() else value,
        "end_time": end,
        "id": object_id,
        "livemode": False,
        "meter": meter_id,
        "object": "billing.meter_event_summary",
        "start_time": start,
    }


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def search_result(data: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return {
        "object": "search_result",
        "data": data,
        "has_more": False,
        "next_page": None,
        "url": url,
    }
