"""Sends a v1 usage report to the collector and turns its answer into a result or a typed error.

An accepted report's answer (201, or 200 for a duplicate) may carry ``billing_periods``: the
customer's known billing periods. They are parsed here (``common.billing_periods``); an answer
without them, or with a body that is not JSON, is still accepted and simply has none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from agent.errors import CollectorConflict, CollectorRejected, CollectorUnavailable
from common.billing_periods import PeriodBounds, parse_periods
from common.clock import Clock, SystemClock
from common.schema import UsageReport

REPORT_PATH = "/api/usage/report"
_RETRYABLE_4XX = {408, 429}
_BODY_EXCERPT = 500
URL_SETTING = "AGENT_COLLECTOR_URL (or BILLING_API_URL)"
_HINTS = {
    401: "the collector did not accept the token: check AGENT_COLLECTOR_TOKEN",
    403: "the collector refused this token for this customer: check AGENT_COLLECTOR_TOKEN "
    "and AGENT_CUSTOMER_ID",
    404: f"nothing answers at this path: {URL_SETTING} should be the collector's base, like "
    f"https://collector:3100, not .../api/usage/report",
}


def refusal_hint(status: int) -> str | None:
    """What to fix when the collector refuses every report with ``status`` (401, 403, 404)."""
    return _HINTS.get(status)


class Delivery(enum.StrEnum):
    """How the collector took an accepted report."""

    CREATED = "created"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Accepted:
    """The collector took the report: how, and the billing periods its answer named."""

    delivery: Delivery
    periods: tuple[PeriodBounds, ...] = ()


def answer_periods(response: httpx.Response) -> tuple[PeriodBounds, ...]:
    """The ``billing_periods`` of an accepted answer; none when absent or unreadable."""
    try:
        body = response.json()
    except ValueError:  # not JSON, or not text at all
        return ()
    return tuple(parse_periods(body))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, given as seconds or as an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


class CollectorClient:
    """POSTs reports to ``{base_url}/api/usage/report`` with an optional bearer token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        token: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + REPORT_PATH
        self._clock = clock or SystemClock()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    async def send(self, report: UsageReport) -> Accepted:
        """Send one report: 201 (any 2xx) is created, 200 a duplicate; anything else raises."""
        try:
            response = await self._client.post(
                self._url, content=report.to_json().encode(), headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise CollectorUnavailable(f"timed out sending to {self._url}") from exc
        except httpx.HTTPError as exc:
            raise CollectorUnavailable(f"cannot reach the collector at {self._url}: {exc}") from exc
        status = response.status_code
        if status == 200:
            return Accepted(Delivery.DUPLICATE, answer_periods(response))
        if 200 < status < 300:
            return Accepted(Delivery.CREATED, answer_periods(response))
        excerpt = response.text[:_BODY_EXCERPT]
        if status >= 500 or status in _RETRYABLE_4XX:
            raise CollectorUnavailable(
                f"collector answered HTTP {status}: {excerpt}",
                status=status,
                retry_after=parse_retry_after(
                    response.headers.get("Retry-After"), self._clock.now()
                ),
            )
        if status == 409:
            raise CollectorConflict(
                f"collector holds a different report {report.id}: {excerpt}",
                status=status,
                body=excerpt,
            )
        hint = refusal_hint(status)
        if hint is not None:
            raise CollectorRejected(
                f"collector answered HTTP {status} at {self._url}; {hint}",
                status=status,
                body=excerpt,
            )
        raise CollectorRejected(
            f"collector rejected report {report.id} with HTTP {status}: {excerpt}",
            status=status,
            body=excerpt,
        )
