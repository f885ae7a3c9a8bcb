"""Billing meters, v1 meter events and event summaries."""

from __future__ import annotations

import hashlib
from typing import Any

from collector.stripe_sandbox import aggregation, errors, meter_events, objects, params
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.state import Store

router = Router()


def _meter(store: Store, meter_id: str) -> dict[str, Any]:
    found = store.meters.get(meter_id)
    if found is None:
        raise errors.no_such("billing.meter", meter_id)
    return found


def create_meter(store: Store, req: Request) -> dict[str, Any]:
    p = req.params
    params.required(p, "display_name")
    event_name = str(params.required(p, "event_name"))
    aggregation_params = p.get("default_aggregation")
    if not isinstance(aggregation_params, dict) or not aggregation_params.get("formula"):
        raise errors.missing_param("default_aggregation[formula]")
    formula = params.choice(aggregation_params, "formula", aggregation.FORMULAS, None)
    for other in store.meters.values():
        if other["event_name"] == event_name and other["status"] == "active":
            raise errors.invalid(
                f"An active meter with event_name `{event_name}` already exists.",
                param="event_name",
            )
    created = objects.meter(store.new_id("mtr"), store.now(), p, formula)
    store.meters[created["id"]] = created
    return created


def retrieve_meter(store: Store, req: Request) -> dict[str, Any]:
    return _meter(store, req.path_params["id"])


def update_meter(store: Store, req: Request) -> dict[str, Any]:
    found = _meter(store, req.path_params["id"])
    if req.params.get("display_name"):
        found["display_name"] = req.params["display_name"]
        found["updated"] = store.now()
    return found


def list_meters(store: Store, req: Request) -> dict[str, Any]:
    items = params.newest_first(store.meters.values())
    status = params.choice(req.params, "status", ("active", "inactive"), None)
    if status:
        items = [m for m in items if m["status"] == status]
    return params.paginate(items, req.params, "/v1/billing/meters")


def _set_status(store: Store, req: Request, status: str) -> dict[str, Any]:
    found = _meter(store, req.path_params["id"])
    found["status"] = status
    found["status_transitions"]["deactivated_at"] = store.now() if status == "inactive" else None
    found["updated"] = store.now()
    return found


def deactivate_meter(store: Store, req: Request) -> dict[str, Any]:
    return _set_status(store, req, "inactive")


def reactivate_meter(store: Store, req: Request) -> dict[str, Any]:
    return _set_status(store, req, "active")


def create_meter_event(store: Store, req: Request) -> dict[str, Any]:
    """Synchronous validation, as the v1 endpoint does; a reused identifier is a 400."""
    p = req.params
    event_name = str(params.required(p, "event_name"))
    payload = p.get("payload")
    if not isinstance(payload, dict) or not payload:
        raise errors.missing_param("payload")
    timestamp = params.integer(p, "timestamp", store.now())
    assert timestamp is not None
    identifier = str(p.get("identifier") or store.new_id("mevt", 20))
    candidate = meter_events.validate(
        store,
        event_name=event_name,
        payload=payload,
        identifier=identifier,
        timestamp=timestamp,
        source="v1",
    )
    if meter_events.is_duplicate(store, identifier):
        raise meter_events.duplicate_error(identifier)
    stored = meter_events.record(store, candidate)
    return objects.meter_event(
        created=stored.received_at,
        event_name=event_name,
        identifier=identifier,
        payload={str(k): str(v) for k, v in payload.items()},
        timestamp=timestamp,
    )


def _aligned(value: int, width: int, param: str, what: str) -> None:
    if value % width:
        raise errors.invalid(f"{param} must be aligned with {what} boundaries.", param=param)


def list_event_summaries(store: Store, req: Request) -> dict[str, Any]:
    meter = _meter(store, req.path_params["id"])
    p = req.params
    customer = str(params.required(p, "customer"))
    if customer not in store.customers:
        raise errors.no_such("customer", customer, "customer")
    start = params.integer(p, "start_time")
    end = params.integer(p, "end_time")
    if start is None:
        raise errors.missing_param("start_time")
    if end is None:
        raise errors.missing_param("end_time")
    window = params.choice(p, "value_grouping_window", ("hour", "day"), None)
    _aligned(start, 60, "start_time", "minute")
    _aligned(end, 60, "end_time", "minute")
    if window is not None:
        width = aggregation.WINDOW_SECONDS[window]
        _aligned(start, width, "start_time", window)
        _aligned(end, width, "end_time", window)
    if end <= start:
        raise errors.invalid("end_time must be after start_time.", param="end_time")
    events = store.meter_events_of(meter["id"], customer)
    spans = aggregation.summaries(
        meter["default_aggregation"]["formula"], events, start=start, end=end, window=window
    )
    data = [
        objects.meter_event_summary(
            object_id=_summary_id(meter["id"], customer, span_start, span_end),
            meter_id=meter["id"],
            start=span_start,
            end=span_end,
            value=value,
        )
        for span_start, span_end, value in reversed(spans)
    ]
    return params.paginate(data, p, f"/v1/billing/meters/{meter['id']}/event_summaries")


def _summary_id(meter_id: str, customer: str, start: int, end: int) -> str:
    # Stable ids keep starting_after pagination working across calls.
    digest = hashlib.sha256(f"{meter_id}:{customer}:{start}:{end}".encode()).hexdigest()
    return f"mtrusg_{digest[:24]}"


for _method, _path, _handler in (
    ("POST", "/v1/billing/meters", create_meter),
    ("GET", "/v1/billing/meters", list_meters),
    ("GET", "/v1/billing/meters/{id}", retrieve_meter),
    ("POST", "/v1/billing/meters/{id}", update_meter),
    ("POST", "/v1/billing/meters/{id}/deactivate", deactivate_meter),
    ("POST", "/v1/billing/meters/{id}/reactivate", reactivate_meter),
    ("GET", "/v1/billing/meters/{id}/event_summaries", list_event_summaries),
    ("POST", "/v1/billing/meter_events", create_meter_event),
):
    router.add(_method, _path, _handler)
