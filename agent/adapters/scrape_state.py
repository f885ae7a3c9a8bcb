"""The scraped counters' baselines, kept in the agent's SQLite state file.

They live next to the spool and the watermark so one transaction commits a report together with
the baselines it was measured against. Older agents kept them in ``scrape-baselines.json``;
``migrate_json_baselines`` moves that file into the database once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent.adapters.series import SeriesKey
from agent.adapters.state_db import SCRAPE_BASELINES, StateDb
from agent.errors import StateError

FILE_NAME = "scrape-baselines.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CounterBaseline:
    """The last scraped value of every series one selector matched, and when it was scraped.

    A series missing from ``seen`` was last seen at the baselines' ``taken_at``.
    """

    selector: str
    series: dict[SeriesKey, Decimal] = field(default_factory=dict)
    seen: dict[SeriesKey, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class ScrapeBaselines:
    """Baselines per report metric, and when they were scraped."""

    taken_at: datetime
    metrics: dict[str, CounterBaseline] = field(default_factory=dict)


def _encode(baselines: ScrapeBaselines) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "taken_at": baselines.taken_at.isoformat(),
        "metrics": {
            metric: {
                "selector": baseline.selector,
                "series": [
                    _encode_series(key, value, baseline.seen.get(key), baselines.taken_at)
                    for key, value in sorted(baseline.series.items())
                ],
            }
            for metric, baseline in baselines.metrics.items()
        },
    }


def _encode_series(
    key: SeriesKey, value: Decimal, seen: datetime | None, taken_at: datetime
) -> dict[str, Any]:
    # ``seen_at`` only for a series absent from the last scrape; older agents ignore the field.
    item: dict[str, Any] = {"labels": dict(key), "value": str(value)}
    if seen is not None and seen != taken_at:
        item["seen_at"] = seen.isoformat()
    return item


def _decode(raw: Any) -> ScrapeBaselines:
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        raise ValueError("unknown state format")
    metrics = {}
    for metric, entry in raw["metrics"].items():
        series: dict[SeriesKey, Decimal] = {}
        seen: dict[SeriesKey, datetime] = {}
        for item in entry["series"]:
            key = tuple(sorted((str(k), str(v)) for k, v in item["labels"].items()))
            series[key] = Decimal(item["value"])
            if "seen_at" in item:
                seen[key] = datetime.fromisoformat(item["seen_at"])
        metrics[str(metric)] = CounterBaseline(str(entry["selector"]), series, seen)
    return ScrapeBaselines(datetime.fromisoformat(raw["taken_at"]), metrics)


class JsonBaselineStore:
    """Reads and atomically replaces ``scrape-baselines.json`` in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def load(self) -> ScrapeBaselines | None:
        """The stored baselines, or ``None`` when there are none yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from exc
        try:
            return _decode(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
            raise StateError(f"{self.path} is corrupt: {exc}") from exc

    def save(self, baselines: ScrapeBaselines) -> None:
        """Replace the stored baselines; a crash leaves either the old or the new file."""
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(_encode(baselines), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc}") from exc


def encode_baselines(baselines: ScrapeBaselines) -> str:
    """The baselines as compact JSON text."""
    return json.dumps(_encode(baselines), separators=(",", ":"))


def decode_baselines(text: str) -> ScrapeBaselines:
    """Baselines from ``encode_baselines`` text; a bad document is a ``StateError``."""
    try:
        return _decode(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
        raise StateError(f"stored scrape baselines are corrupt: {exc}") from exc


class SqliteBaselineStore:
    """Scrape baselines in the state file's ``meta`` table; ``save`` joins an open transaction."""

    def __init__(self, db: StateDb) -> None:
        self._db = db

    def load(self) -> ScrapeBaselines | None:
        text = self._db.get(SCRAPE_BASELINES)
        return None if text is None else decode_baselines(text)

    def save(self, baselines: ScrapeBaselines) -> None:
        self._db.put(SCRAPE_BASELINES, encode_baselines(baselines))


def migrate_json_baselines(state_dir: Path, db: StateDb) -> bool:
    """Move ``scrape-baselines.json`` into the database once; ``True`` if something moved."""
    legacy = JsonBaselineStore(state_dir)
    if not legacy.path.exists():
        return False
    if db.get(SCRAPE_BASELINES) is None:
        baselines = legacy.load()
        if baselines is not None:
            SqliteBaselineStore(db).save(baselines)
    try:
        os.replace(legacy.path, legacy.path.with_suffix(".json.migrated"))
    except OSError as exc:
        raise StateError(f"cannot retire {legacy.path}: {exc}") from exc
    return True
