"""The sandbox's clock: an injected clock the control API can move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common.clock import Clock


class SandboxClock:
    """Wraps any ``Clock``; ``set`` moves a ``ManualClock`` itself, otherwise keeps an offset.

    Moving a shared ``ManualClock`` keeps the tests' and the sandbox's time in step.
    """

    def __init__(self, base: Clock) -> None:
        self._base = base
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def timestamp(self) -> int:
        """Unix seconds, as Stripe's integer timestamps."""
        return int(self.now().timestamp())

    def set(self, moment: datetime) -> None:
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        setter = getattr(self._base, "set", None)
        if callable(setter):
            setter(moment - self._offset)
        else:
            self._offset += moment - self.now()

    def set_timestamp(self, seconds: int) -> None:
        self.set(datetime.fromtimestamp(seconds, UTC))
