"""Stripe-style API errors: the JSON body, the HTTP status and the retry advice header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOCS_HINT = "Please see https://stripe.com/docs or we can help at https://support.stripe.com/."


@dataclass
class StripeAPIError(Exception):
    """An error answered as ``{"error": {...}}``; ``should_retry`` sets Stripe-Should-Retry."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    should_retry: bool | None = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def headers(self) -> dict[str, str]:
        if self.should_retry is None:
            return {}
        return {"Stripe-Should-Retry": "true" if self.should_retry else "false"}


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeAPIError:
    """A 400 the caller must not retry unchanged."""
    return StripeAPIError(400, message, code=code, param=param, should_retry=False)


def missing_param(param: str) -> StripeAPIError:
    return invalid(f"Missing required param: {param}.", code="parameter_missing", param=param)


def unknown_param(param: str) -> StripeAPIError:
    return invalid(f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def invalid_integer(param: str, value: object) -> StripeAPIError:
    return invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=param)


def no_such(kind: str, object_id: str, param: str = "id") -> StripeAPIError:
    return StripeAPIError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def unknown_route(method: str, path: str) -> StripeAPIError:
    return StripeAPIError(404, f"Unrecognized request URL ({method.upper()}: {path}). {DOCS_HINT}")


def authentication(message: str) -> StripeAPIError:
    return StripeAPIError(401, message)


def idempotency_mismatch(key: str) -> StripeAPIError:
    return StripeAPIError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        type="idempotency_error",
        should_retry=False,
    )


def idempotency_in_flight(key: str) -> StripeAPIError:
    return StripeAPIError(
        409,
        "There is currently another in-progress request using this Stripe-Idempotency-Key "
        f"('{key}'); please try again later.",
        type="idempotency_error",
        code="idempotency_key_in_use",
        should_retry=True,
    )


def rate_limited() -> StripeAPIError:
    return StripeAPIError(
        429,
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )


def lock_timeout() -> StripeAPIError:
    return StripeAPIError(
        429,
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it. If you see this error intermittently, retry the "
        "request.",
        code="lock_timeout",
        should_retry=True,
    )


def server_error() -> StripeAPIError:
    return StripeAPIError(500, "An unknown error occurred", type="api_error")
