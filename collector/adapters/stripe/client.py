"""Building the Stripe client from settings, and translating its errors at the boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import stripe

from collector.errors import StripeNotConfigured, StripePermanent, StripeTransient
from common.redaction import redact

LEGACY_API_VERSION = "2025-02-24.acacia"
DUPLICATE_CODES = frozenset({"resource_already_exists", "duplicate_meter_event"})


@dataclass(frozen=True)
class OutgoingEvent:
    """One usage event as a sender needs it, already turned into a whole number."""

    identifier: str
    customer_id: str
    stripe_customer_id: str
    metric: str
    semantics: str
    event_name: str
    lookup_key: str
    quantity: int
    timestamp: datetime


@dataclass(frozen=True)
class Delivered:
    """Stripe accepted the event, or already had it (a duplicate identifier)."""

    status: int
    duplicate: bool = False
    stripe_id: str | None = None
    """The id of the object Stripe created, where it has one (a usage record; a meter event's
    only id is its ``identifier``)."""


@dataclass
class StripeConnection:
    """An SDK client and the HTTP client it owns, which must be closed on shutdown."""

    client: stripe.StripeClient
    http: stripe.HTTPXClient

    async def aclose(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]


def build_client(
    api_key: str | None, api_base: str | None, *, timeout: float = 30.0
) -> StripeConnection:
    """An SDK client with async httpx and no SDK-level retries: the outbox owns retries."""
    if not api_key:
        raise StripeNotConfigured("COLLECTOR_STRIPE_API_KEY is not set")
    bases: dict[str, str] = {}
    if api_base:
        base = api_base.rstrip("/")
        bases = {"api": base, "meter_events": base, "files": base, "connect": base}
    http = stripe.HTTPXClient(timeout=timeout)
    client = stripe.StripeClient(
        api_key,
        base_addresses=bases,  # type: ignore[arg-type]
        http_client=http,
        max_network_retries=0,
    )
    return StripeConnection(client, http)


def _retry_after(error: stripe.StripeError) -> float | None:
    value = (error.headers or {}).get("retry-after") or (error.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_duplicate(error: stripe.StripeError) -> bool:
    """Stripe's answer to an identifier it already has: delivered, not a failure.

    Stripe answers 400 with ``Stripe-Should-Retry: false``; the message names the identifier.
    """
    if error.http_status != 400:
        return False
    if (error.headers or {}).get("stripe-should-retry") == "true":
        return False
    code = (error.code or "").lower()
    message = str(error.user_message or error).lower()
    return code in DUPLICATE_CODES or (
        "identifier" in message and ("duplicate" in message or "already" in message)
    )


def translate(error: Exception) -> Exception:
    """An SDK or network error as the collector's transient or permanent error."""
    if isinstance(error, stripe.RateLimitError):
        return StripeTransient(
            "Stripe rate limit (429)", status=429, retry_after=_retry_after(error)
        )
    if isinstance(error, stripe.APIConnectionError):
        return StripeTransient(f"cannot reach Stripe: {type(error).__name__}")
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        return StripeTransient(
            f"Stripe refused the API key ({error.http_status}); fix COLLECTOR_STRIPE_API_KEY",
            status=error.http_status,
        )
    if isinstance(error, stripe.StripeError):
        status = error.http_status
        should_retry = (error.headers or {}).get("stripe-should-retry")
        # Stripe's message can quote the key; it is stored in batches and returned by the API.
        message = redact(
            f"Stripe {status}: {error.user_message or error.code or type(error).__name__}"
        )
        if should_retry == "true" or (
            should_retry is None and (status is None or status >= 500 or status in (408, 409))
        ):
            return StripeTransient(message, status=status, retry_after=_retry_after(error))
        return StripePermanent(message, status=status, stripe_code=error.code)
    return error


def outcome_of(error: Exception) -> Delivered | Exception:
    """A failed send as a sender reports it: delivered (duplicate identifier) or an error."""
    if isinstance(error, stripe.StripeError):
        if is_duplicate(error):
            return Delivered(status=error.http_status or 400, duplicate=True)
        return translate(error)
    return StripeTransient(f"cannot reach Stripe: {type(error).__name__}")
