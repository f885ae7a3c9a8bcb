"""Which Stripe identifiers a request carries, and requests that carried one at the same time.

Not part of Stripe's API: tests read the call log to check that no identifier (a meter event's
``identifier`` or an ``Idempotency-Key``) was ever in flight in two requests at once. A request
is in flight from the moment the sandbox received it until it answered or dropped it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from collector.stripe_sandbox import forms


class Interval(Protocol):
    """A logged call: its identifiers and when it was received and finished (monotonic s)."""

    identifiers: list[str]
    monotonic: float
    finished: float | None


def carried_identifiers(headers: Mapping[str, str], body: bytes) -> list[str]:
    """The idempotency key and every meter event identifier in a request, each once."""
    found: list[str] = []
    key = headers.get("idempotency-key")
    if key:
        found.append(key)
    if body:
        for identifier in _body_identifiers(headers.get("content-type", ""), body):
            if identifier not in found:
                found.append(identifier)
    return found


def _body_identifiers(content_type: str, body: bytes) -> list[str]:
    try:
        if content_type.startswith("application/json"):
            params: Any = json.loads(body)
        else:
            params = forms.decode(body.decode("utf-8", "replace"))
    except ValueError:
        return []
    if not isinstance(params, dict):
        return []
    events = params.get("events")
    if isinstance(events, list):
        return [str(e["identifier"]) for e in events if isinstance(e, dict) and e.get("identifier")]
    identifier = params.get("identifier")
    return [str(identifier)] if identifier else []


def overlaps(calls: Iterable[Interval], now: float) -> list[tuple[str, int, int]]:
    """(identifier, i, j) for calls ``i < j`` that carried it while both were in flight.

    A call not finished yet counts as in flight until ``now``.
    """
    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for index, call in enumerate(calls):
        end = call.finished if call.finished is not None else now
        for identifier in call.identifiers:
            spans[identifier].append((call.monotonic, end, index))
    found: list[tuple[str, int, int]] = []
    for identifier, intervals in spans.items():
        intervals.sort()
        for a, (_, end_a, i) in enumerate(intervals):
            for start_b, _, j in intervals[a + 1 :]:
                if start_b >= end_a:
                    break
                found.append((identifier, min(i, j), max(i, j)))
    return found
