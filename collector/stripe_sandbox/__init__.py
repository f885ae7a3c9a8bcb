"""A stateful Stripe-compatible HTTP server for tests and demos, driven through the real SDK.

Point ``stripe.StripeClient(key, base_addresses={"api": url, "meter_events": url})`` at it,
with the key the sandbox was started with (``DEFAULT_API_KEY`` unless given). See
docs/sandbox.md.
"""

from __future__ import annotations

from typing import Any

from collector.stripe_sandbox.app import SandboxApp
from collector.stripe_sandbox.keys import DEFAULT_API_KEY
from collector.stripe_sandbox.server import SandboxServer, serve


def create_sandbox_app(**kwargs: Any) -> SandboxApp:
    """A new sandbox ASGI app; see ``SandboxApp`` for the clock, seed and webhook options."""
    return SandboxApp(**kwargs)


__all__ = ["DEFAULT_API_KEY", "SandboxApp", "SandboxServer", "create_sandbox_app", "serve"]
