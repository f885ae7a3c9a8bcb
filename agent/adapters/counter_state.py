"""Each Prometheus counter series' last seen value, kept in the agent's SQLite state file.

One ``meta`` row per report metric (``counter_baselines:<metric>``). It is written by the
measurement's ``commit``, i.e. in the transaction that spools the report measured against it,
so after a crash the report and the values it ended on are both on disk or neither is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from agent.adapters.series import SeriesKey
from agent.adapters.state_db import COUNTER_BASELINES, StateDb, timestamp
from agent.errors import StateError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SeenValue:
    """A series' last known value and when it was seen (its sample time, or a window start)."""

    value: Decimal
    seen_at: datetime


@dataclass(frozen=True)
class CounterMemory:
    """What one selector's series last read, as of the end of the last window spooled with it."""

    selector: str
    as_of: datetime
    series: dict[SeriesKey, SeenValue] = field(default_factory=dict)


def encode_memory(memory: CounterMemory) -> str:
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "selector": memory.selector,
            "as_of": timestamp(memory.as_of),
            "series": [
                {"labels": dict(key), "value": str(seen.value), "seen_at": timestamp(seen.seen_at)}
                for key, seen in sorted(memory.series.items())
            ],
        },
        separators=(",", ":"),
    )


def _decode(raw: Any) -> CounterMemory:
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        raise ValueError("unknown state format")
    series = {
        tuple(sorted((str(k), str(v)) for k, v in item["labels"].items())): SeenValue(
            Decimal(item["value"]), datetime.fromisoformat(item["seen_at"])
        )
        for item in raw["series"]
    }
    return CounterMemory(str(raw["selector"]), datetime.fromisoformat(raw["as_of"]), series)


def decode_memory(text: str) -> CounterMemory:
    """A ``CounterMemory`` from ``encode_memory`` text; a bad document is a ``StateError``."""
    try:
        return _decode(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        raise StateError(f"stored counter baselines are corrupt: {exc}") from exc


class SqliteCounterMemoryStore:
    """One metric's ``CounterMemory`` in the ``meta`` table; ``save`` joins an open transaction."""

    def __init__(self, db: StateDb, metric: str) -> None:
        self._db = db
        self._key = f"{COUNTER_BASELINES}:{metric}"

    def load(self) -> CounterMemory | None:
        text = self._db.get(self._key)
        return None if text is None else decode_memory(text)

    def save(self, memory: CounterMemory) -> None:
        self._db.put(self._key, encode_memory(memory))
