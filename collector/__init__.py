"""The central collector: stores usage reports and forwards them to Stripe."""

from common import __version__

__all__ = ["__version__"]
