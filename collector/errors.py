"""The collector's errors. Each carries its HTTP status and a stable error code."""

from __future__ import annotations

import math
from typing import ClassVar

from common.errors import MeteringError, PermanentError, TransientError


class CollectorError(MeteringError):
    """Root of the collector's errors."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def response_headers(self) -> dict[str, str]:
        """Headers the error response carries (Retry-After, WWW-Authenticate)."""
        return {}


class BadRequest(CollectorError, PermanentError):
    status_code = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class UnsupportedMediaType(CollectorError, PermanentError):
    status_code = 415
    code = "unsupported_media_type"


class BodyTooLarge(CollectorError, PermanentError):
    status_code = 413
    code = "body_too_large"


class ValidationFailed(CollectorError, PermanentError):
    status_code = 422
    code = "validation_error"


class UnknownMetric(ValidationFailed):
    code = "unknown_metric"


class InvalidWindow(ValidationFailed):
    code = "invalid_window"


class NotFound(CollectorError, PermanentError):
    status_code = 404
    code = "not_found"


class Conflict(CollectorError, PermanentError):
    status_code = 409
    code = "conflict"


class AlreadyLinked(Conflict):
    """Relinking would move a customer's billing; it needs an explicit replace."""

    code = "already_linked"


class StripeCustomerInUse(Conflict):
    """The Stripe customer already backs another collector customer."""

    code = "stripe_customer_in_use"


class StripeCustomerMissing(ValidationFailed):
    """Stripe has no such customer in the account and mode of COLLECTOR_STRIPE_API_KEY."""

    code = "stripe_customer_not_found"


class DatabaseUnavailable(CollectorError, TransientError):
    status_code = 503
    code = "database_unavailable"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        CollectorError.__init__(self, detail, field=field)
        self.retry_after = None


class DatabaseNotMigrated(CollectorError, PermanentError):
    """The schema is missing or older than this version's; `usage-collector db upgrade` fixes it."""

    status_code = 503
    code = "database_not_migrated"


class StripeTransient(CollectorError, TransientError):
    """Stripe or the network failed in a way a later retry may fix (429, 5xx, connection)."""

    status_code = 502
    code = "stripe_unavailable"

    def __init__(
        self, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        CollectorError.__init__(self, detail)
        self.status = status
        self.retry_after = retry_after


class StripePermanent(CollectorError, PermanentError):
    """Stripe refused the request; retrying the same request cannot succeed."""

    status_code = 502
    code = "stripe_rejected"

    def __init__(
        self, detail: str, *, status: int | None = None, stripe_code: str | None = None
    ) -> None:
        CollectorError.__init__(self, detail)
        self.status = status
        self.stripe_code = stripe_code

    @property
    def too_old(self) -> bool:
        """Stripe refused the event's timestamp as older than its 35-day window."""
        return self.stripe_code == "timestamp_too_far_in_past" or "35 calendar days" in self.detail


class StripeNotConfigured(CollectorError, PermanentError):
    status_code = 503
    code = "stripe_not_configured"


class CustomerNotLinked(CollectorError, TransientError):
    """The customer has no Stripe customer yet; its usage waits until it is linked."""

    status_code = 409
    code = "customer_not_linked"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        CollectorError.__init__(self, detail, field=field)
        self.retry_after = None


class Unauthorized(CollectorError, PermanentError):
    """No credential, or one the collector does not know or has revoked."""

    status_code = 401
    code = "unauthorized"

    def response_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="usage-collector"'}


class Forbidden(CollectorError, PermanentError):
    """A known credential asked for something its role or customer does not allow."""

    status_code = 403
    code = "forbidden"


class RateLimited(CollectorError, TransientError):
    """A credential sent more requests than its rate limit allows."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: float) -> None:
        CollectorError.__init__(self, detail)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after or 1.0)))}


class RequestTimeout(CollectorError, PermanentError):
    """The client did not finish sending its body in time (a slow or stalled client)."""

    status_code = 408
    code = "request_timeout"
