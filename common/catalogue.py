"""The metric catalogue: what each billable metric is and how it is billed."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import SchemaError
from common.semantics import MetricKind, Semantics, to_decimal

METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class Rounding(enum.StrEnum):
    """How a non-integer value becomes the whole number Stripe requires."""

    EXACT = "exact"
    CEIL = "ceil"
    FLOOR = "floor"
    HALF_UP = "half_up"


class NotWholeNumberError(SchemaError):
    """A value is not a whole number and the metric's rounding rule is ``exact``."""


_ROUNDING_MODES = {
    Rounding.CEIL: ROUND_CEILING,
    Rounding.FLOOR: ROUND_FLOOR,
    Rounding.HALF_UP: ROUND_HALF_UP,
}


class MetricDefinition(BaseModel):
    """One billable metric."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=METRIC_NAME_PATTERN)
    unit: str = Field(min_length=1, max_length=32)
    kind: MetricKind
    semantics: Semantics
    price_lookup_key: str = Field(min_length=1, max_length=200)
    meter_event_name: str = Field(min_length=1, max_length=100)
    rounding: Rounding = Rounding.EXACT
    description: str = ""

    def to_billable(self, value: float | int | Decimal) -> int:
        """The whole number sent to Stripe for ``value``, by this metric's rounding rule."""
        exact = to_decimal(value)
        if exact == exact.to_integral_value():
            return int(exact)
        if self.rounding is Rounding.EXACT:
            raise NotWholeNumberError(
                f"metric {self.name!r} needs whole numbers, got {value}; "
                "configure a rounding rule (ceil, floor or half_up) for it"
            )
        return int(exact.quantize(Decimal(1), rounding=_ROUNDING_MODES[self.rounding]))


DEFAULT_METRICS: tuple[MetricDefinition, ...] = (
    MetricDefinition(
        name="devices",
        unit="device",
        kind=MetricKind.GAUGE,
        semantics=Semantics.SET,
        price_lookup_key="device_usage",
        meter_event_name="device_usage",
        description="Active devices at collection time; the newest value in the period is billed.",
    ),
    MetricDefinition(
        name="mqtt_messages",
        unit="message",
        kind=MetricKind.COUNTER,
        semantics=Semantics.INCREMENT,
        price_lookup_key="mqtt_messages",
        meter_event_name="mqtt_messages",
        description="MQTT messages handled by the broker; per-window deltas are summed.",
    ),
    MetricDefinition(
        name="storage_gb",
        unit="GB",
        kind=MetricKind.GAUGE,
        semantics=Semantics.MAX,
        price_lookup_key="storage_gb",
        meter_event_name="storage_gb",
        rounding=Rounding.CEIL,
        description="Storage in GB (10^9 bytes); the peak in the period is billed, rounded up.",
    ),
    MetricDefinition(
        name="api_requests",
        unit="request",
        kind=MetricKind.COUNTER,
        semantics=Semantics.INCREMENT,
        price_lookup_key="api_requests",
        meter_event_name="api_requests",
        description="Platform API requests; per-window deltas are summed.",
    ),
)


class MetricCatalogue(Mapping[str, MetricDefinition]):
    """An immutable, name-indexed set of metric definitions."""

    def __init__(self, definitions: Iterable[MetricDefinition]) -> None:
        by_name: dict[str, MetricDefinition] = {}
        for definition in definitions:
            by_name[definition.name] = definition
        self._by_name = by_name

    def __getitem__(self, name: str) -> MetricDefinition:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    @classmethod
    def default(cls) -> MetricCatalogue:
        return cls(DEFAULT_METRICS)

    def extended(self, extra: Iterable[MetricDefinition]) -> MetricCatalogue:
        """A catalogue with ``extra`` added; an extra entry replaces a default of the same name."""
        return MetricCatalogue([*self._by_name.values(), *extra])

    @classmethod
    def from_config(cls, extra_json: str | None) -> MetricCatalogue:
        """The defaults plus operator-defined metrics given as a JSON list of definitions."""
        catalogue = cls.default()
        if not extra_json or not extra_json.strip():
            return catalogue
        return catalogue.extended(parse_definitions(extra_json))


def parse_definitions(text: str) -> list[MetricDefinition]:
    """Parse a JSON list of metric definitions, with a clear error for each bad entry."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"extra metrics are not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise SchemaError("extra metrics must be a JSON list of metric definitions")
    result = []
    for index, entry in enumerate(raw):
        try:
            result.append(MetricDefinition.model_validate(entry))
        except ValidationError as exc:
            raise SchemaError(f"extra metric #{index} is invalid: {exc}") from exc
    return result


def is_finite_number(value: float | int | Decimal) -> bool:
    """True for a real, finite number (not NaN, not infinite)."""
    if isinstance(value, Decimal):
        return value.is_finite()
    return math.isfinite(value)
