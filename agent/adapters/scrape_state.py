"""The scraped counters' baselines, kept in a small JSON file in the agent's state directory.

Issue 4 moves the agent's state to SQLite; this module is the seam: anything with ``load`` and
``save`` of ``ScrapeBaselines`` can replace it.
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
from agent.errors import StateError

FILE_NAME = "scrape-baselines.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CounterBaseline:
    """The last scraped value of every series one selector matched."""

    selector: str
    series: dict[SeriesKey, Decimal] = field(default_factory=dict)


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
                    {"labels": dict(key), "value": str(value)}
                    for key, value in sorted(baseline.series.items())
                ],
            }
            for metric, baseline in baselines.metrics.items()
        },
    }


def _decode(raw: Any) -> ScrapeBaselines:
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        raise ValueError("unknown state format")
    metrics = {}
    for metric, entry in raw["metrics"].items():
        series = {
            tuple(sorted((str(k), str(v)) for k, v in item["labels"].items())): Decimal(
                item["value"]
            )
            for item in entry["series"]
        }
        metrics[str(metric)] = CounterBaseline(str(entry["selector"]), series)
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
