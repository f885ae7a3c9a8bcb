"""`stripe setup` and `stripe verify`: the Stripe objects the catalogue needs, created and checked.

Setup gives every catalogue metric, extra metrics included, a meter (unless ``--legacy``) and a
monthly metered price, each price on a product of its own named after the metric
("IoT platform usage: mqtt_messages"): Stripe words an invoice line after the product, so that
is how a reader tells the lines apart. A metric without a default price gets a $0 price, so its
usage is forwarded and shown on the invoice, and setup says how to charge for it.

Setup is idempotent: it finds meters by event name and prices by lookup key before it creates
anything, and a price's product is created with the price, in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from collector.adapters.db.links import Link
from collector.adapters.stripe.catalog import PRODUCT_MARKER, StripeCatalog
from common.catalogue import MetricCatalogue, MetricDefinition
from common.semantics import Semantics

PRODUCT_NAME = "IoT platform usage"
LEGACY_AGGREGATE = {
    Semantics.INCREMENT: "sum",
    Semantics.SET: "last_during_period",
    Semantics.MAX: "max",
}


@dataclass(frozen=True)
class PriceSpec:
    """How much a unit costs: ``unit_amount`` cents per unit, after ``divide_by``."""

    unit_amount: int
    divide_by: int = 1
    nickname: str = ""


DEFAULT_PRICES = {
    "device_usage": PriceSpec(500, nickname="$5 per device"),
    "mqtt_messages": PriceSpec(10, divide_by=1000, nickname="$0.10 per 1,000 messages"),
    "storage_gb": PriceSpec(50, nickname="$0.50 per GB (peak)"),
    "api_requests": PriceSpec(10, divide_by=1000, nickname="$0.10 per 1,000 requests"),
}
REQUIRED_ITEMS = ("device_usage", "mqtt_messages", "storage_gb")
"""Prices every linked subscription must carry; an item missing for another price (usage the
agent collects only when configured, or an extra metric) is a recommendation, not an issue."""


def product_name(definition: MetricDefinition) -> str:
    """The product an invoice line is named after: one per metric."""
    return f"{PRODUCT_NAME}: {definition.name}"


def unpriced(definition: MetricDefinition) -> PriceSpec:
    """The $0 price of a metric without a default price."""
    return PriceSpec(0, nickname=f"{definition.name}: no price set ($0 per {definition.unit})")


def meter_formula(definition: MetricDefinition) -> str:
    """``sum`` for increments; ``last`` for set and max (the collector sends the running peak)."""
    return "sum" if definition.semantics is Semantics.INCREMENT else "last"


@dataclass
class SetupResult:
    meters: dict[str, str] = field(default_factory=dict)
    prices: dict[str, str] = field(default_factory=dict)
    products: dict[str, str] = field(default_factory=dict)
    """Each price's product, by lookup key."""
    created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def product_id(self) -> str:
        """The products the prices are on, comma-separated (one per metric)."""
        return ", ".join(sorted(set(self.products.values())))


@dataclass
class Verification:
    issues: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.issues


def _price_params(
    definition: MetricDefinition, spec: PriceSpec, meter: str | None
) -> dict[str, Any]:
    recurring: dict[str, Any] = {"interval": "month", "usage_type": "metered"}
    if meter is None:
        recurring["aggregate_usage"] = LEGACY_AGGREGATE[definition.semantics]
    else:
        recurring["meter"] = meter
    params: dict[str, Any] = {
        "product_data": {
            "name": product_name(definition),
            "metadata": {PRODUCT_MARKER: "true", "metric": definition.name},
        },
        "currency": "usd",
        "unit_amount": spec.unit_amount,
        "lookup_key": definition.price_lookup_key,
        "nickname": spec.nickname or definition.name,
        "recurring": recurring,
        "metadata": {"metric": definition.name, "semantics": definition.semantics.value},
    }
    if spec.divide_by > 1:
        params["transform_quantity"] = {"divide_by": spec.divide_by, "round": "up"}
    return params


class StripeSetup:
    def __init__(
        self,
        catalog: StripeCatalog,
        metrics: MetricCatalogue,
        prices: dict[str, PriceSpec] | None = None,
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._prices = DEFAULT_PRICES if prices is None else prices

    async def apply(self, *, legacy: bool = False) -> SetupResult:
        """Create what the catalogue lacks: a meter (unless ``legacy``) and a price per metric."""
        result = SetupResult()
        meters = {} if legacy else await self._catalog.meters()
        for name in self._metrics.names:
            definition = self._metrics[name]
            if legacy:
                continue
            meter = meters.get(definition.meter_event_name)
            if meter is None:
                meter = await self._catalog.create_meter(
                    definition.meter_event_name,
                    f"{definition.name} ({definition.unit})",
                    meter_formula(definition),
                )
                result.created.append(f"meter {meter['id']} ({definition.meter_event_name})")
            result.meters[definition.meter_event_name] = meter["id"]
        keys = [self._metrics[n].price_lookup_key for n in self._metrics.names]
        existing = await self._catalog.prices(keys)
        for name in self._metrics.names:
            definition = self._metrics[name]
            key = definition.price_lookup_key
            price = existing.get(key)
            if price is None:
                spec = self._prices.get(key)
                if spec is None:
                    spec = unpriced(definition)
                    result.notes.append(
                        f"{key!r} has no default price: created at $0 per {definition.unit}, so "
                        "its usage is forwarded but not charged; to charge for it, create a "
                        f"price with lookup key {key!r} and transfer_lookup_key=true"
                    )
                meter_id = None if legacy else result.meters[definition.meter_event_name]
                price = await self._catalog.create_price(
                    _price_params(definition, spec, meter_id), legacy=legacy
                )
                result.created.append(f"price {price['id']} ({key})")
            result.prices[key] = price["id"]
            result.products[key] = _id(price.get("product"))
        return result

    async def verify(self, links: list[Link], *, legacy: bool = False) -> Verification:
        report = Verification()
        meters = {} if legacy else await self._catalog.meters()
        keys = [self._metrics[n].price_lookup_key for n in self._metrics.names]
        prices = await self._catalog.prices(keys)
        for name in self._metrics.names:
            definition = self._metrics[name]
            self._verify_metric(definition, meters, prices, report, legacy=legacy)
        self._verify_products(prices, report)
        for link in links:
            await self._verify_customer(link, prices, report)
        return report

    def _verify_products(self, prices: dict[str, dict[str, Any]], report: Verification) -> None:
        """Prices sharing a product give invoice lines that do not say which metric they bill."""
        by_product: dict[str, list[str]] = {}
        for key, price in sorted(prices.items()):
            by_product.setdefault(_id(price.get("product")), []).append(key)
        for product, keys in sorted(by_product.items()):
            if len(keys) > 1:
                report.recommendations.append(
                    f"prices {', '.join(map(repr, keys))} share product {product}, so their "
                    "invoice lines read alike: give each its own product (a new price with "
                    "product_data and transfer_lookup_key=true)"
                )

    def _verify_metric(
        self,
        definition: MetricDefinition,
        meters: dict[str, dict[str, Any]],
        prices: dict[str, dict[str, Any]],
        report: Verification,
        *,
        legacy: bool,
    ) -> None:
        key = definition.price_lookup_key
        price = prices.get(key)
        meter = meters.get(definition.meter_event_name)
        if not legacy:
            if meter is None:
                report.issues.append(
                    f"{definition.name}: no active meter with event_name "
                    f"{definition.meter_event_name!r}"
                )
                report.recommendations.append("run `usage-collector stripe setup`")
            else:
                formula = (meter.get("default_aggregation") or {}).get("formula")
                if formula != meter_formula(definition):
                    report.issues.append(
                        f"{definition.name}: meter {meter['id']} aggregates with {formula!r}, but "
                        f"{definition.semantics.value} needs {meter_formula(definition)!r}"
                    )
                    report.recommendations.append(
                        f"create a meter with formula {meter_formula(definition)!r} "
                        "and move the price to it"
                    )
        if price is None:
            report.issues.append(f"{definition.name}: no active price with lookup key {key!r}")
            report.recommendations.append("run `usage-collector stripe setup`")
            return
        unit = price.get("unit_amount_decimal") or price.get("unit_amount") or 0
        if price.get("billing_scheme") != "tiered" and Decimal(str(unit)) == 0:
            report.recommendations.append(
                f"{definition.name}: price {price['id']} is $0, so its usage is not charged"
            )
        recurring = price.get("recurring") or {}
        if recurring.get("usage_type") != "metered":
            report.issues.append(f"{definition.name}: price {price['id']} is not metered")
        if legacy:
            wanted = LEGACY_AGGREGATE[definition.semantics]
            if recurring.get("aggregate_usage") != wanted:
                report.issues.append(
                    f"{definition.name}: price {price['id']} aggregates with "
                    f"{recurring.get('aggregate_usage')!r}, "
                    f"{definition.semantics.value} needs {wanted!r}"
                )
        elif meter is not None and recurring.get("meter") != meter["id"]:
            report.issues.append(
                f"{definition.name}: price {price['id']} is not linked to meter {meter['id']}"
            )
        report.checked.append(definition.name)

    async def _verify_customer(
        self, link: Link, prices: dict[str, dict[str, Any]], report: Verification
    ) -> None:
        subscriptions = [
            s
            for s in await self._catalog.subscriptions(link.stripe_customer_id)
            if s.get("status") in ("active", "trialing", "past_due")
        ]
        if not subscriptions:
            report.issues.append(
                f"customer {link.customer_id} ({link.stripe_customer_id}) "
                "has no active subscription"
            )
            return
        subscription = max(subscriptions, key=lambda s: s.get("created") or 0)
        item_keys = {
            (item.get("price") or {}).get("lookup_key")
            for item in (subscription.get("items") or {}).get("data", [])
        }
        for key in sorted(set(prices) - item_keys):
            missing = (
                f"customer {link.customer_id}: subscription {subscription['id']} "
                f"has no item for price {key!r}"
            )
            if key in REQUIRED_ITEMS:
                report.issues.append(missing)
            else:
                report.recommendations.append(
                    f"{missing}, so its usage is not billed (usage_records mode dead-letters it)"
                )
            report.recommendations.append(
                f"add price {prices[key]['id']} to subscription {subscription['id']}"
            )


def _id(reference: Any) -> str:
    """An object id from an id or an expanded object."""
    return str(reference.get("id") if isinstance(reference, dict) else reference or "")
