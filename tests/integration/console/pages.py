"""The console over HTTP for tests that need no browser: a signed-in client and a seeded harness.

``seeded`` fills a forwarding harness (the Stripe sandbox on a manual clock) with three
customers: ``cust_a`` and ``cust_b`` linked and billed, ``cust_a``'s ``api_requests`` batch
dead-lettered because its meter was deactivated, and ``cust_u`` never linked.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import build_services, create_app
from collector.services.principals import Role
from collector.settings import CollectorSettings
from tests.support.forwarding import Harness, hourly_report

BASE = "http://collector.test"
LINKED = ("cust_a", "cust_b")
UNLINKED = "cust_u"
DEAD_METER = "api_requests"


def form_token(html: str) -> str:
    """The ``csrf`` value of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, "no form token on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str, **headers: str) -> httpx.Response:
    """Fetch the sign-in form and post ``key`` with its token, as a browser does."""
    form = await client.get("/console/sign-in")
    assert form.status_code == 200, form.text
    return await client.post(
        "/console/sign-in",
        data={"csrf": form_token(form.text), "key": key, "next": "/console/"},
        headers=headers,
    )


@asynccontextmanager
async def browser(h: Harness, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client of the console (no lifespan runs). With ``overrides``, the app
    is another replica: its own services, built from the harness's settings and these, on the
    same database and clock."""
    services = h.services
    if overrides:
        settings = CollectorSettings(**{**_settings_of(h), **overrides})
        services = build_services(settings, clock=h.clock, registry=CollectorRegistry())
    app = create_app(services.settings, services)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cast(Any, app)), base_url=BASE
        ) as client:
            yield client
    finally:
        if services is not h.services:
            await services.close()


def _settings_of(h: Harness) -> dict[str, Any]:
    """The harness's settings as constructor arguments (secrets unwrapped)."""
    values = {}
    for name in type(h.settings).model_fields:
        value = getattr(h.settings, name)
        values[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return values


async def key(h: Harness, role: str, customer_id: str | None = None) -> str:
    issued = await h.services.credentials.create_key(Role(role), "console test", customer_id)
    return issued.secret


@asynccontextmanager
async def signed_in(
    h: Harness, role: str, customer_id: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(h) as client:
        answer = await sign_in(client, await key(h, role, customer_id))
        assert answer.status_code == 303, answer.text
        yield client


async def seeded(h: Harness) -> dict[str, Any]:
    """The three customers above; returns the dead batch."""
    meters = await StripeCatalog(h.client).meters()
    await h.client.v1.billing.meters.deactivate_async(meters[DEAD_METER]["id"])
    start = h.clock.now()
    for customer in LINKED:
        await h.subscribe(customer)
    for hour in (1, 2):
        for customer in LINKED:
            extra = {DEAD_METER: 7} if customer == "cust_a" and hour == 2 else {}
            await h.report(
                hourly_report(customer, start, hour, devices=3, mqtt_messages=100, **extra)
            )
    await h.settle()
    for hour in (1, 2):
        await h.ingest(hourly_report(UNLINKED, start, hour, devices=1))
    (dead,) = await h.services.outbox.batches("dead", None, 10)
    return {"dead": dead, "meter": meters[DEAD_METER]["id"]}
