"""Counter baselines from the agent's own state, so a series that went quiet is not billed from 0.

Prometheus finds a window's baselines only as far back as the baseline lookback (a day). A
series silent for longer (a target not scraped for 26 hours that kept counting) would look new
and count from 0, billing every message since the broker started. So the agent keeps each
series' last value and when it was seen, as of ``as_of``, the end of the last window spooled
with it. A window ``(s, e]`` is then measured like this:

1. The baseline query looks back at least to ``as_of``, so a sample in ``(as_of, s]`` is found;
   Prometheus' last value at or before ``s`` wins.
2. Failing that, a series the agent has seen is compared with its persisted value, whatever the
   gap: the agent read every sample up to ``as_of`` and step 1 found none after it.
3. Only a series in neither counts from 0: it is truly new.

The memory describes ``s`` only when ``as_of <= s``; a later one (a former leader's, say) is
ignored, and so is one older than ``FORGET_AFTER``. A series not seen for ``FORGET_AFTER`` is
forgotten, which bounds the state; if it ever returns it counts from 0. Between retention and
``FORGET_AFTER`` the persisted value is still used: Prometheus can no longer say whether samples
came after it, but comparing with it can only bill less than counting from 0, never more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from agent.adapters.counter_state import CounterMemory, SeenValue
from agent.adapters.prometheus import CounterWindow
from agent.adapters.series import SeriesKey
from common.windows import Window

# Longer than any catch-up (AGENT_MAX_CATCHUP is at most 35 days) and than Prometheus' default
# 15-day retention. Also used for series missing from direct /metrics scrapes.
FORGET_AFTER = timedelta(days=35)


def usable_memory(
    memory: CounterMemory | None, selector: str, window: Window
) -> CounterMemory | None:
    """``memory`` if it describes the window's start: same selector, not later, not forgotten."""
    if memory is None or memory.selector != selector:
        return None
    if memory.as_of > window.start or window.start - memory.as_of > FORGET_AFTER:
        return None
    return memory


def baselines(counters: CounterWindow, memory: CounterMemory | None) -> Mapping[SeriesKey, Decimal]:
    """Prometheus' baselines, and the persisted value of every other series the agent has seen."""
    merged = {} if memory is None else {key: seen.value for key, seen in memory.series.items()}
    merged.update(counters.baselines)
    return merged


def remember(
    selector: str, window: Window, counters: CounterWindow, memory: CounterMemory | None
) -> CounterMemory:
    """The memory as of the window's end: its last samples, its baselines, older values kept."""
    series = {} if memory is None else dict(memory.series)
    for key, value in counters.baselines.items():
        known = series.get(key)
        if known is None or known.value != value:
            series[key] = SeenValue(value, window.start)
    for key, values in counters.samples.items():
        series[key] = SeenValue(values[-1], counters.last_seen.get(key, window.end))
    horizon = window.end - FORGET_AFTER
    kept = {key: seen for key, seen in series.items() if seen.seen_at >= horizon}
    return CounterMemory(selector, window.end, kept)
