"""Capped exponential backoff with jitter for sends to the collector."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n waits a random d/2..d seconds, d = min(maximum, initial * multiplier^(n-1))."""

    initial: float = 1.0
    maximum: float = 300.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return rng.uniform(base / 2, base)
