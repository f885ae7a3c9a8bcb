from tests.support.stripe_sandbox import sandbox_clock, stripe_sandbox

__all__ = ["sandbox_clock", "stripe_sandbox"]
