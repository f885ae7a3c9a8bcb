"""Customers, products and prices."""

from __future__ import annotations

import re
from typing import Any

from collector.stripe_sandbox import errors, objects, params
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.price_params import parse_price
from collector.stripe_sandbox.state import Store

router = Router()
_CLAUSE = re.compile(r"""^\s*(metadata\[['"]([^'"]+)['"]\]|\w+)\s*:\s*['"]([^'"]*)['"]\s*$""")


def _customer(store: Store, customer_id: str, param: str = "id") -> dict[str, Any]:
    found = store.customers.get(customer_id)
    if found is None:
        raise errors.no_such("customer", customer_id, param)
    return found


def create_customer(store: Store, req: Request) -> dict[str, Any]:
    created = objects.customer(store.new_id("cus", 14), store.now(), req.params, store.token())
    created["metadata"] = params.metadata(req.params)
    store.customers[created["id"]] = created
    store.emit("customer.created", dict(created))
    return created


def retrieve_customer(store: Store, req: Request) -> dict[str, Any]:
    return _customer(store, req.path_params["id"])


def update_customer(store: Store, req: Request) -> dict[str, Any]:
    found = _customer(store, req.path_params["id"])
    for name in ("email", "name", "description", "phone"):
        if name in req.params:
            found[name] = req.params[name] or None
    found["metadata"] = params.metadata(req.params, found["metadata"])
    return found


def delete_customer(store: Store, req: Request) -> dict[str, Any]:
    found = _customer(store, req.path_params["id"])
    del store.customers[found["id"]]
    return {"deleted": True, "id": found["id"], "object": "customer"}


def list_customers(store: Store, req: Request) -> dict[str, Any]:
    items = params.newest_first(store.customers.values())
    if req.params.get("email"):
        items = [c for c in items if c["email"] == req.params["email"]]
    return params.paginate(items, req.params, "/v1/customers")


def search_customers(store: Store, req: Request) -> dict[str, Any]:
    """Supports ``field:'v'`` and ``metadata['k']:'v'`` clauses joined by AND."""
    query = str(params.required(req.params, "query"))
    clauses = []
    for part in re.split(r"\s+AND\s+", query.strip()):
        match = _CLAUSE.match(part)
        if match is None:
            raise errors.invalid(f"Invalid search query: {query}", param="query")
        clauses.append((match.group(2), match.group(1), match.group(3)))

    def matches(customer: dict[str, Any]) -> bool:
        for meta_key, field_name, value in clauses:
            if meta_key is not None:
                if customer["metadata"].get(meta_key) != value:
                    return False
            elif str(customer.get(field_name)) != value:
                return False
        return True

    found = [c for c in params.newest_first(store.customers.values()) if matches(c)]
    return objects.search_result(found, "/v1/customers/search")


def create_product(store: Store, req: Request) -> dict[str, Any]:
    params.required(req.params, "name")
    created = objects.product(store.new_id("prod", 14), store.now(), req.params)
    created["metadata"] = params.metadata(req.params)
    store.products[created["id"]] = created
    return created


def _product(store: Store, product_id: str, param: str = "id") -> dict[str, Any]:
    found = store.products.get(product_id)
    if found is None:
        raise errors.no_such("product", product_id, param)
    return found


def retrieve_product(store: Store, req: Request) -> dict[str, Any]:
    return _product(store, req.path_params["id"])


def update_product(store: Store, req: Request) -> dict[str, Any]:
    found = _product(store, req.path_params["id"])
    for name in ("name", "description", "unit_label"):
        if name in req.params:
            found[name] = req.params[name] or None
    if "active" in req.params:
        found["active"] = params.boolean(req.params, "active")
    found["metadata"] = params.metadata(req.params, found["metadata"])
    found["updated"] = store.now()
    return found


def list_products(store: Store, req: Request) -> dict[str, Any]:
    items = params.newest_first(store.products.values())
    if "active" in req.params:
        active = params.boolean(req.params, "active")
        items = [p for p in items if p["active"] == active]
    return params.paginate(items, req.params, "/v1/products")


def _price(store: Store, price_id: str, param: str = "id") -> dict[str, Any]:
    found = store.prices.get(price_id)
    if found is None:
        raise errors.no_such("price", price_id, param)
    return found


def retrieve_price(store: Store, req: Request) -> dict[str, Any]:
    return objects.render_price(_price(store, req.path_params["id"]), req.expand)


def list_prices(store: Store, req: Request) -> dict[str, Any]:
    items = params.newest_first(store.prices.values())
    p = req.params
    if "active" in p:
        active = params.boolean(p, "active")
        items = [price for price in items if price["active"] == active]
    if p.get("product"):
        items = [price for price in items if price["product"] == p["product"]]
    if p.get("type"):
        items = [price for price in items if price["type"] == p["type"]]
    if "lookup_keys" in p:
        keys = p["lookup_keys"] if isinstance(p["lookup_keys"], list) else [p["lookup_keys"]]
        items = [price for price in items if price["lookup_key"] in keys]
    expand = req.expand
    return params.paginate(
        items, p, "/v1/prices", lambda price: objects.render_price(price, expand, "data.")
    )


def _claim_lookup_key(store: Store, key: str | None, transfer: bool, owner: str) -> None:
    if key is None:
        return
    for other in store.prices.values():
        if other["lookup_key"] == key and other["id"] != owner:
            if not transfer:
                raise errors.invalid(
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    param="lookup_key",
                )
            other["lookup_key"] = None


def update_price(store: Store, req: Request) -> dict[str, Any]:
    found = _price(store, req.path_params["id"])
    if "lookup_key" in req.params:
        key = req.params["lookup_key"] or None
        _claim_lookup_key(
            store, key, params.boolean(req.params, "transfer_lookup_key"), found["id"]
        )
        found["lookup_key"] = key
    if "active" in req.params:
        found["active"] = params.boolean(req.params, "active")
    if "nickname" in req.params:
        found["nickname"] = req.params["nickname"] or None
    found["metadata"] = params.metadata(req.params, found["metadata"])
    return objects.render_price(found, req.expand)


def create_price(store: Store, req: Request) -> dict[str, Any]:
    p = req.params
    currency = str(params.required(p, "currency")).lower()
    if p.get("product_data"):
        product = create_product(store, Request("POST", "", {}, b"", "", p["product_data"]))
        product_id = product["id"]
    else:
        product_id = _product(store, str(params.required(p, "product")), "product")["id"]
    parsed = parse_price(store, p, legacy=req.is_legacy_version)
    lookup_key = p.get("lookup_key") or None
    price_id = store.new_id("price")
    _claim_lookup_key(store, lookup_key, params.boolean(p, "transfer_lookup_key"), price_id)
    created = objects.price(
        price_id,
        store.now(),
        product_id=product_id,
        currency=currency,
        lookup_key=lookup_key,
        nickname=p.get("nickname") or None,
        metadata=params.metadata(p),
        **parsed,
    )
    store.prices[price_id] = created
    return objects.render_price(created, req.expand)


for _method, _path, _handler in (
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/customers/search", search_customers),
    ("GET", "/v1/customers/{id}", retrieve_customer),
    ("POST", "/v1/customers/{id}", update_customer),
    ("DELETE", "/v1/customers/{id}", delete_customer),
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products", list_products),
    ("GET", "/v1/products/{id}", retrieve_product),
    ("POST", "/v1/products/{id}", update_product),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices", list_prices),
    ("GET", "/v1/prices/{id}", retrieve_price),
    ("POST", "/v1/prices/{id}", update_price),
):
    router.add(_method, _path, _handler)
