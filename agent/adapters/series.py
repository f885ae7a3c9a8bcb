"""How a time series is identified across sources and across the state file."""

from __future__ import annotations

from collections.abc import Mapping

SeriesKey = tuple[tuple[str, str], ...]


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """A series identity without ``__name__``, which functions like ``last_over_time`` drop."""
    return tuple(sorted((str(k), str(v)) for k, v in labels.items() if k != "__name__"))
