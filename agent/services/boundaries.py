"""Billing-period boundaries: where a window is cut and where compaction stops.

Stripe bills usage per subscription period, and a period may start at any second (12:34:56 on
the 19th), not at a UTC month. The collector names the customer's known periods in its answer
to every accepted report; the agent keeps their starts and ends (``KnownBoundaries.learn``) in
its state file, and then:

- a window ``(s, e]`` with a known boundary ``s < b < e`` is collected as ``(s, b]`` and
  ``(b, e]``, two reports with their own ids (``split_window``, used by the catch-up);
- reports are never folded across a known boundary (``straddles``, used by compaction).

Boundaries are only ever added: one that is not a boundary any more (the customer moved to
another subscription) costs an extra report, never a wrong bill. Those older than ``RETENTION``
are dropped, as no window that old is still collected (``AGENT_MAX_CATCHUP`` is at most 35 days)
and the collector refuses one that old; at most ``MAX_KNOWN`` are kept, the oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from agent.errors import StateError
from common.billing_periods import PeriodBounds, boundaries, cut_points
from common.clock import Clock
from common.windows import Window, as_utc

log = structlog.get_logger(__name__)

RETENTION = timedelta(days=62)
MAX_KNOWN = 64


def split_window(window: Window, known: Sequence[datetime]) -> list[Window]:
    """``window`` cut at every known boundary strictly inside it, oldest piece first."""
    pieces: list[Window] = []
    start = window.start
    for cut in cut_points(window.start, window.end, known):
        pieces.append(Window(start, cut))
        start = cut
    pieces.append(Window(start, window.end))
    return pieces


def straddles(start: datetime, end: datetime, known: Sequence[datetime]) -> bool:
    """True when a known boundary lies strictly inside the window ``(start, end]``."""
    return bool(cut_points(start, end, known))


def kept(moments: Iterable[datetime], now: datetime) -> list[datetime]:
    """The distinct moments worth keeping at ``now``, ascending: recent ones, at most a few."""
    recent = sorted({as_utc(m) for m in moments if as_utc(m) >= now - RETENTION})
    return recent[:MAX_KNOWN]


class BoundaryStore(Protocol):
    """Where known boundaries survive a restart."""

    def load(self) -> list[datetime]: ...

    def save(self, moments: Iterable[datetime]) -> None: ...


class KnownBoundaries:
    """The boundaries this agent knows, read from and written to its state file."""

    def __init__(self, store: BoundaryStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def moments(self) -> list[datetime]:
        """Every known boundary, ascending; none when the stored ones cannot be read."""
        try:
            return self._store.load()
        except StateError as exc:
            log.warning("billing_boundaries_unreadable", error=str(exc))
            return []

    def learn(self, periods: Iterable[PeriodBounds]) -> list[datetime]:
        """Remember the starts and ends of ``periods``; returns the boundaries that were new."""
        return self.add(boundaries(periods))

    def add(self, moments: Iterable[datetime]) -> list[datetime]:
        """Remember ``moments`` as boundaries; returns those that were new (and recent)."""
        known = self.moments()
        merged = kept([*known, *moments], self._clock.now())
        if merged != known:
            self._store.save(merged)  # also drops the ones too old to keep
        new = sorted(set(merged) - set(known))
        if new:
            log.info("billing_boundaries_learned", new=[m.isoformat() for m in new])
        return new
