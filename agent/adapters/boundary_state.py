"""Known billing-period boundaries, kept in the agent's SQLite state file.

They are a short JSON list of UTC timestamps in ``meta.billing_boundaries``, so an agent that
restarts cuts its windows exactly as before, before the collector has answered anything. The
same text travels in the Lease to a successor (``services.leader``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agent.adapters.state_db import BILLING_BOUNDARIES, StateDb, timestamp
from agent.errors import StateError
from common.windows import as_utc


def encode_boundaries(moments: Iterable[datetime]) -> str:
    """The moments as a compact JSON list of UTC timestamps."""
    return json.dumps([timestamp(m) for m in moments], separators=(",", ":"))


def decode_boundaries(text: str) -> list[datetime]:
    """Moments from ``encode_boundaries`` text, ascending; a bad document is a ``StateError``."""
    try:
        raw: Any = json.loads(text)
        if not isinstance(raw, list):
            raise TypeError("not a list")
        return sorted({as_utc(datetime.fromisoformat(item)) for item in raw})
    except (ValueError, TypeError) as exc:
        raise StateError(f"stored billing boundaries are corrupt: {exc}") from exc


class SqliteBoundaryStore:
    """Boundaries in the state file's ``meta`` table; ``save`` joins an open transaction."""

    def __init__(self, db: StateDb) -> None:
        self._db = db

    def load(self) -> list[datetime]:
        text = self._db.get(BILLING_BOUNDARIES)
        return [] if text is None else decode_boundaries(text)

    def save(self, moments: Iterable[datetime]) -> None:
        self._db.put(BILLING_BOUNDARIES, encode_boundaries(moments))
