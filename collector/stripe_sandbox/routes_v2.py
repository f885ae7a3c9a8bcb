"""The v2 meter event session and stream, and event retrieval (v1 snapshot and v2 thin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from collector.stripe_sandbox import errors, meter_events, params
from collector.stripe_sandbox.errors import StripeAPIError
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.state import Store

router = Router()
SESSION_SECONDS = 15 * 60
MAX_STREAM_EVENTS = 100


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_session(store: Store, req: Request) -> dict[str, Any]:
    now = store.clock.now()
    token = store.new_id("mes_auth", 32)
    store.sessions[token] = store.now() + SESSION_SECONDS
    return {
        "authentication_token": token,
        "created": _iso(now),
        "expires_at": _iso(now + timedelta(seconds=SESSION_SECONDS)),
        "id": store.new_id("mes", 20),
        "livemode": False,
        "object": "v2.billing.meter_event_session",
    }


def _require_session(store: Store, req: Request) -> None:
    expires = store.sessions.get(req.bearer or "")
    if expires is None or store.now() >= expires:
        raise StripeAPIError(
            401,
            "The meter event session has expired or is invalid. Create a new session.",
            type="temporary_session_expired",
            code="billing_meter_event_session_expired",
        )


def _parse_time(raw: Any, index: int) -> int:
    try:
        return int(datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise errors.invalid(
            f"Invalid timestamp: {raw}", param=f"events[{index}].timestamp"
        ) from exc


def create_stream(store: Store, req: Request) -> dict[str, Any]:
    """Shape is checked now; meter, customer, value and time checks fail asynchronously."""
    _require_session(store, req)
    events = req.params.get("events")
    if not isinstance(events, list) or not events:
        raise errors.missing_param("events")
    if len(events) > MAX_STREAM_EVENTS:
        raise errors.invalid(f"At most {MAX_STREAM_EVENTS} events per request.", param="events")
    parsed = []
    for index, event in enumerate(events):
        if not isinstance(event, dict) or not event.get("event_name"):
            raise errors.missing_param(f"events[{index}].event_name")
        if not isinstance(event.get("payload"), dict):
            raise errors.missing_param(f"events[{index}].payload")
        timestamp = (
            _parse_time(event["timestamp"], index) if event.get("timestamp") else store.now()
        )
        identifier = str(event.get("identifier") or store.new_id("mevt", 20))
        parsed.append((event, timestamp, identifier))
    rejected: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for event, timestamp, identifier in parsed:
        if meter_events.is_duplicate(store, identifier):
            continue
        try:
            candidate = meter_events.validate(
                store,
                event_name=str(event["event_name"]),
                payload=event["payload"],
                identifier=identifier,
                timestamp=timestamp,
                source="v2",
            )
        except StripeAPIError as exc:
            meter_id = _meter_id(store, str(event["event_name"]))
            rejection = {"identifier": identifier, "code": exc.code, "message": exc.message}
            store.stream_rejections.append({**rejection, "event_name": event["event_name"]})
            rejected.setdefault((meter_id, str(exc.code)), []).append(rejection)
            continue
        meter_events.record(store, candidate)
    emit_reports(store, rejected)
    return {}


def _meter_id(store: Store, event_name: str) -> str | None:
    for meter in store.meters.values():
        if meter["event_name"] == event_name:
            return str(meter["id"])
    return None


def emit_reports(
    store: Store, rejected: dict[tuple[str | None, str], list[dict[str, Any]]]
) -> None:
    """Emit Stripe's thin error-report events, one per meter (or no-meter) with errors."""
    by_meter: dict[str | None, list[tuple[str, list[dict[str, Any]]]]] = {}
    for (meter_id, code), rows in rejected.items():
        by_meter.setdefault(meter_id, []).append((code, rows))
    now = _iso(store.clock.now())
    for meter_id, groups in by_meter.items():
        count = sum(len(rows) for _, rows in groups)
        data = {
            "developer_message_summary": f"{count} meter event(s) failed validation.",
            "reason": {
                "error_count": count,
                "error_types": [
                    {
                        "code": code,
                        "error_count": len(rows),
                        "sample_errors": [
                            {
                                "error_message": r["message"],
                                "request": {"identifier": r["identifier"]},
                            }
                            for r in rows[:5]
                        ],
                    }
                    for code, rows in groups
                ],
            },
            "validation_end": now,
            "validation_start": now,
        }
        if meter_id is None:
            store.emit_thin("v1.billing.meter.no_meter_found", None, data)
        else:
            related = {
                "id": meter_id,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{meter_id}",
            }
            store.emit_thin("v1.billing.meter.error_report_triggered", related, data)


def retrieve_thin_event(store: Store, req: Request) -> dict[str, Any]:
    found = store.thin_events.get(req.path_params["id"])
    if found is None:
        raise errors.no_such("event", req.path_params["id"])
    return found


def list_events(store: Store, req: Request) -> dict[str, Any]:
    items = params.newest_first(store.events.values())
    if req.params.get("type"):
        items = [e for e in items if e["type"] == req.params["type"]]
    return params.paginate(items, req.params, "/v1/events")


def retrieve_event(store: Store, req: Request) -> dict[str, Any]:
    found = store.events.get(req.path_params["id"])
    if found is None:
        raise errors.no_such("event", req.path_params["id"])
    return found


router.add("POST", "/v2/billing/meter_event_session", create_session)
router.add("POST", "/v2/billing/meter_event_stream", create_stream)
router.add("GET", "/v2/core/events/{id}", retrieve_thin_event)
router.add("GET", "/v1/events", list_events)
router.add("GET", "/v1/events/{id}", retrieve_event)
