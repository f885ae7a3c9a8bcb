"""Stripe objects the setup and verification read and create: products, meters, prices."""

from __future__ import annotations

from typing import Any

import stripe

from collector.adapters.stripe.client import LEGACY_API_VERSION, translate
from collector.adapters.stripe.subscriptions import as_dict

PRODUCT_MARKER = "usage_metering"


class StripeCatalog:
    """Thin async wrappers over the SDK that return plain dicts and translate errors."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except stripe.StripeError as exc:
            raise translate(exc) from exc

    async def find_product(self) -> dict[str, Any] | None:
        page = await self._call(self._client.v1.products.list_async({"limit": 100, "active": True}))
        for product in page.data:
            data = as_dict(product)
            if (data.get("metadata") or {}).get(PRODUCT_MARKER) == "true":
                return data
        return None

    async def create_product(self, name: str) -> dict[str, Any]:
        product = await self._call(
            self._client.v1.products.create_async(
                {"name": name, "metadata": {PRODUCT_MARKER: "true"}}
            )
        )
        return as_dict(product)

    async def meters(self) -> dict[str, dict[str, Any]]:
        """Active meters by event name."""
        page = await self._call(
            self._client.v1.billing.meters.list_async({"limit": 100, "status": "active"})
        )
        return {as_dict(m)["event_name"]: as_dict(m) for m in page.data}

    async def create_meter(
        self, event_name: str, display_name: str, formula: str
    ) -> dict[str, Any]:
        meter = await self._call(
            self._client.v1.billing.meters.create_async(
                {
                    "display_name": display_name,
                    "event_name": event_name,
                    "default_aggregation": {"formula": formula},
                    "customer_mapping": {
                        "type": "by_id",
                        "event_payload_key": "stripe_customer_id",
                    },
                    "value_settings": {"event_payload_key": "value"},
                }
            )
        )
        return as_dict(meter)

    async def prices(self, lookup_keys: list[str]) -> dict[str, dict[str, Any]]:
        """Active prices by lookup key."""
        page = await self._call(
            self._client.v1.prices.list_async(
                {"lookup_keys": lookup_keys, "active": True, "limit": 100}
            )
        )
        return {
            as_dict(p)["lookup_key"]: as_dict(p) for p in page.data if as_dict(p).get("lookup_key")
        }

    async def create_price(self, params: dict[str, Any], *, legacy: bool = False) -> dict[str, Any]:
        """Create a price; legacy metered prices exist only on API versions before basil."""
        options: dict[str, Any] = {"stripe_version": LEGACY_API_VERSION} if legacy else {}
        created = self._client.v1.prices.create_async(params, options)  # type: ignore[arg-type]
        return as_dict(await self._call(created))

    async def subscriptions(self, stripe_customer_id: str) -> list[dict[str, Any]]:
        page = await self._call(
            self._client.v1.subscriptions.list_async(
                {
                    "customer": stripe_customer_id,
                    "status": "all",
                    "limit": 20,
                    "expand": ["data.items.data.price"],
                }
            )
        )
        return [as_dict(s) for s in page.data]
