"""Per-credential token buckets on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.services.token_buckets import TokenBuckets
from common.clock import ManualClock


def test_a_burst_then_the_sustained_rate() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_credentials_do_not_share_a_bucket() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=10.0, burst=2, clock=clock)
    clock.advance(3600)
    assert [buckets.take("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_memory_is_bounded_by_forgetting_full_buckets() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=1.0, burst=5, clock=clock, max_keys=10)
    for index in range(10):
        buckets.take(f"k{index}")
    clock.advance(60)
    assert buckets.take("new") == 0.0
    assert len(buckets._buckets) == 1
