"""Injected faults, rate limiting, per-(customer, meter) locking and the call log."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_FIELDS = (
    "error_429_rate",
    "error_500_rate",
    "drop_rate",
    "drop_after_rate",
    "error_500_after_rate",
    "latency_seconds",
    "rate_limit_per_second",
    "lock_per_customer_meter",
    "path_prefixes",
)


@dataclass
class FaultConfig:
    """What goes wrong, per API request.

    ``drop_rate``/``error_429_rate``/``error_500_rate`` act before the request is processed;
    ``drop_after_rate``/``error_500_after_rate`` after it took effect (the answer is lost, as
    when Stripe processed a call whose response never arrived).
    """

    error_429_rate: float = 0.0
    error_500_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0
    error_500_after_rate: float = 0.0
    latency_seconds: float = 0.0
    rate_limit_per_second: float | None = None
    lock_per_customer_meter: bool = False
    path_prefixes: list[str] = field(default_factory=lambda: ["/v1/", "/v2/"])

    def applies_to(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.path_prefixes)


@dataclass
class CallRecord:
    """One API request as the sandbox saw it; ``monotonic`` is real time, for RPS checks.

    ``identifiers`` are the Stripe identifiers it carried (``in_flight.carried_identifiers``);
    it was in flight from ``monotonic`` until ``finished`` (None: still running).
    """

    method: str
    path: str
    time: int
    monotonic: float
    status: int | None = None
    fault: str | None = None
    idempotency_key: str | None = None
    identifiers: list[str] = field(default_factory=list)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    """Decides each request's fate from a seeded RNG, so a fault run can be replayed."""

    def __init__(self, seed: int | None = None, ticker: Callable[[], float] = time.monotonic):
        self.config = FaultConfig()
        self._rng = random.Random(seed)
        self._ticker = ticker
        self._admitted: deque[float] = deque()
        self._locks: set[tuple[str, str]] = set()
        self.calls: list[CallRecord] = []

    def configure(self, changes: dict[str, Any], seed: int | None = None) -> FaultConfig:
        unknown = set(changes) - set(FAULT_FIELDS)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = {**asdict(self.config), **changes}
        self.config = FaultConfig(**values)
        if seed is not None:
            self._rng = random.Random(seed)
        return self.config

    def clear(self) -> None:
        self.config = FaultConfig()
        self._admitted.clear()

    def record(
        self,
        method: str,
        path: str,
        now: int,
        key: str | None,
        identifiers: list[str] | None = None,
    ) -> CallRecord:
        call = CallRecord(
            method, path, now, self._ticker(), idempotency_key=key, identifiers=identifiers or []
        )
        self.calls.append(call)
        return call

    def finish(self, call: CallRecord) -> None:
        """The request was answered or dropped: it is no longer in flight."""
        call.finished = self._ticker()

    def ticker(self) -> float:
        return self._ticker()

    def before(self) -> str | None:
        """``"rate_limit"``, ``"drop"``, ``"429"``, ``"500"`` or None for a request about to run."""
        config = self.config
        if config.rate_limit_per_second and not self._admit(config.rate_limit_per_second):
            return "rate_limit"
        roll = self._rng.random()
        if roll < config.drop_rate:
            return "drop"
        roll -= config.drop_rate
        if roll < config.error_429_rate:
            return "429"
        roll -= config.error_429_rate
        if roll < config.error_500_rate:
            return "500"
        return None

    def after(self) -> str | None:
        """``"drop"``, ``"500"`` or None for a request that already took effect."""
        roll = self._rng.random()
        if roll < self.config.drop_after_rate:
            return "drop"
        if roll - self.config.drop_after_rate < self.config.error_500_after_rate:
            return "500"
        return None

    def _admit(self, per_second: float) -> bool:
        now = self._ticker()
        while self._admitted and now - self._admitted[0] >= 1.0:
            self._admitted.popleft()
        if len(self._admitted) >= per_second:
            return False
        self._admitted.append(now)
        return True

    def acquire(self, key: tuple[str, str]) -> bool:
        """Take the (customer, event_name) lock; False when another call holds it."""
        if not self.config.lock_per_customer_meter:
            return True
        if key in self._locks:
            return False
        self._locks.add(key)
        return True

    def release(self, key: tuple[str, str]) -> None:
        self._locks.discard(key)
