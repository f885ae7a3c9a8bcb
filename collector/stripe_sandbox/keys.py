"""The sandbox's API key rule: one secret key, checked like Stripe checks an account's keys.

A sandbox answers only the key it was started with (``DEFAULT_API_KEY`` unless told otherwise).
Any other key gets Stripe's 401, ``invalid_request_error`` with the key masked as Stripe masks
it: its ``sk_test_`` style prefix and last four characters, asterisks between. A request with no
key gets Stripe's "You did not provide an API key" 401. The stripe SDK raises
``stripe.AuthenticationError`` for both, so a misconfigured collector fails in tests the way it
would against Stripe.
"""

from __future__ import annotations

import hmac
import re

from collector.stripe_sandbox import errors
from collector.stripe_sandbox.errors import StripeAPIError

DEFAULT_API_KEY = "sk_test_sandbox"
"""The key a sandbox accepts when started without one (tests, the demo, the benchmarks)."""

_PREFIX = re.compile(r"^(?:sk|rk|pk)_(?:test|live)_")
NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


def masked(key: str) -> str:
    """``sk_test_abcdefgh1234`` as Stripe quotes it back: ``sk_test_********1234``."""
    match = _PREFIX.match(key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    shown = rest[-4:] if len(rest) > 4 else ""
    return prefix + "*" * (len(rest) - len(shown)) + shown


def check(given: str | None, accepted: str) -> None:
    """Raise Stripe's 401 unless ``given`` is the accepted key."""
    if given is None:
        raise errors.authentication(NO_KEY)
    if not hmac.compare_digest(given.encode(), accepted.encode()):
        raise invalid_key(given)


def invalid_key(given: str) -> StripeAPIError:
    return errors.authentication(f"Invalid API Key provided: {masked(given)}")
