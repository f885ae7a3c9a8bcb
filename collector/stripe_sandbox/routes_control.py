"""Test-control endpoints under ``/_sandbox``: faults, clock, read-back, webhooks, reset.

These are not part of Stripe's API; bodies and answers are plain JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from collector.stripe_sandbox import errors, in_flight, periods, routes_v2
from collector.stripe_sandbox.http import Request, Router

if TYPE_CHECKING:
    from collector.stripe_sandbox.app import SandboxApp

ControlHandler = Callable[["SandboxApp", Request], Awaitable[Any]]
router = Router()


def route(method: str, path: str) -> Callable[[ControlHandler], ControlHandler]:
    def register(handler: ControlHandler) -> ControlHandler:
        router.add(method, path, handler)  # type: ignore[arg-type]
        return handler

    return register


@route("GET", "/_sandbox/health")
async def health(app: SandboxApp, req: Request) -> Any:
    return {"ok": True, "now": app.store.now()}


@route("POST", "/_sandbox/reset")
async def reset(app: SandboxApp, req: Request) -> Any:
    app.store.reset()
    app.faults.clear()
    app.faults.calls.clear()
    app.webhooks.deliveries.clear()
    return {"ok": True}


@route("GET", "/_sandbox/faults")
async def get_faults(app: SandboxApp, req: Request) -> Any:
    return dataclasses.asdict(app.faults.config)


@route("POST", "/_sandbox/faults")
async def set_faults(app: SandboxApp, req: Request) -> Any:
    changes = dict(req.params)
    seed = changes.pop("seed", None)
    try:
        config = app.faults.configure(changes, seed)
    except (TypeError, ValueError) as exc:
        raise errors.invalid(str(exc)) from exc
    return dataclasses.asdict(config)


@route("DELETE", "/_sandbox/faults")
async def clear_faults(app: SandboxApp, req: Request) -> Any:
    app.faults.clear()
    return dataclasses.asdict(app.faults.config)


@route("GET", "/_sandbox/calls")
async def calls(app: SandboxApp, req: Request) -> Any:
    return {"data": [call.as_dict() for call in app.faults.calls]}


@route("GET", "/_sandbox/overlaps")
async def overlaps(app: SandboxApp, req: Request) -> Any:
    """Pairs of logged calls that carried one identifier while both were in flight."""
    calls = app.faults.calls
    found = in_flight.overlaps(calls, app.faults.ticker())
    return {
        "data": [
            {"identifier": identifier, "first": calls[i].as_dict(), "second": calls[j].as_dict()}
            for identifier, i, j in found
        ]
    }


@route("DELETE", "/_sandbox/calls")
async def clear_calls(app: SandboxApp, req: Request) -> Any:
    app.faults.calls.clear()
    return {"ok": True}


@route("GET", "/_sandbox/meter_events")
async def meter_events(app: SandboxApp, req: Request) -> Any:
    rows = [dataclasses.asdict(e) for e in app.store.meter_events]
    for name in ("customer", "event_name", "meter_id"):
        if req.params.get(name):
            rows = [r for r in rows if r[name] == req.params[name]]
    return {"data": rows}


@route("GET", "/_sandbox/usage_records")
async def usage_records(app: SandboxApp, req: Request) -> Any:
    rows = app.store.usage_log
    if req.params.get("subscription_item"):
        rows = [r for r in rows if r["subscription_item"] == req.params["subscription_item"]]
    return {"data": rows}


@route("GET", "/_sandbox/stream_rejections")
async def stream_rejections(app: SandboxApp, req: Request) -> Any:
    return {"data": app.store.stream_rejections}


@route("GET", "/_sandbox/clock")
async def get_clock(app: SandboxApp, req: Request) -> Any:
    return {"now": app.store.now()}


@route("POST", "/_sandbox/clock")
async def set_clock(app: SandboxApp, req: Request) -> Any:
    """``{"now": unix_seconds}`` or ``{"advance": seconds}``; periods that end are closed."""
    if "now" in req.params:
        app.clock.set_timestamp(int(req.params["now"]))
    elif "advance" in req.params:
        app.clock.set_timestamp(app.store.now() + int(req.params["advance"]))
    else:
        raise errors.missing_param("now")
    periods.sync(app.store)
    return {"now": app.store.now()}


@route("POST", "/_sandbox/subscriptions/{id}/advance")
async def advance(app: SandboxApp, req: Request) -> Any:
    """Jump the clock to the end of the subscription's period and close it (webhooks follow)."""
    subscription = app.store.subscriptions.get(req.path_params["id"])
    if subscription is None:
        raise errors.no_such("subscription", req.path_params["id"])
    periods.advance(app.store, subscription)
    latest = subscription.get("latest_invoice")
    return {
        "now": app.store.now(),
        "subscription": subscription["id"],
        "latest_invoice": app.store.invoices.get(latest) if latest else None,
    }


@route("POST", "/_sandbox/customers/{id}/payment_failure")
async def payment_failure(app: SandboxApp, req: Request) -> Any:
    """``{"fail": true}`` makes this customer's next invoices fail to pay."""
    customer_id = req.path_params["id"]
    if req.params.get("fail", True):
        app.store.payment_failures.add(customer_id)
    else:
        app.store.payment_failures.discard(customer_id)
    return {"customer": customer_id, "fail": customer_id in app.store.payment_failures}


@route("POST", "/_sandbox/meters/{id}/error_report")
async def error_report(app: SandboxApp, req: Request) -> Any:
    """Fail the named events after accepting them, as Stripe's asynchronous processing can.

    The events stop counting towards the meter, and ``v1.billing.meter.error_report_triggered``
    names them. Body: ``{"errors": [{"identifier": "...", "code": "meter_event_invalid_value",
    "message": "..."}]}``.
    """
    meter_id = req.path_params["id"]
    if meter_id not in app.store.meters:
        raise errors.no_such("billing.meter", meter_id)
    grouped: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for row in req.params.get("errors") or []:
        code = str(row.get("code") or "meter_event_invalid_value")
        grouped.setdefault((meter_id, code), []).append(
            {"identifier": row["identifier"], "message": row.get("message") or code}
        )
    failed = {r["identifier"] for rows in grouped.values() for r in rows}
    app.store.drop_meter_events(failed)
    routes_v2.emit_reports(app.store, grouped)
    return {"ok": True}


@route("GET", "/_sandbox/webhooks")
async def webhooks(app: SandboxApp, req: Request) -> Any:
    return {
        "url": app.webhooks.url,
        "data": [delivery.summary() for delivery in app.webhooks.deliveries],
    }


@route("POST", "/_sandbox/webhooks")
async def configure_webhooks(app: SandboxApp, req: Request) -> Any:
    """``{"url": "...", "secret": "whsec_..."}``; a null url stops deliveries."""
    app.webhooks.configure(req.params.get("url"), req.params.get("secret"))
    return {"url": app.webhooks.url}


@route("POST", "/_sandbox/webhooks/flush")
async def flush_webhooks(app: SandboxApp, req: Request) -> Any:
    await app.webhooks.flush(float(req.params.get("timeout", 10.0)))
    return {"data": [delivery.summary() for delivery in app.webhooks.deliveries]}
