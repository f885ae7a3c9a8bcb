from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.catalogue import MetricCatalogue, MetricDefinition, NotWholeNumberError, Rounding
from common.errors import SchemaError
from common.semantics import Semantics, fold, fold_pair

values = st.lists(st.integers(0, 10**12) | st.decimals(0, 10**6, places=3), max_size=30)


@given(values, st.integers(0, 30))
@pytest.mark.parametrize("semantics", list(Semantics))
def test_folding_any_split_equals_folding_all(semantics: Semantics, items: list, cut: int) -> None:
    cut = min(cut, len(items))
    whole = fold(semantics, items)
    assert fold_pair(semantics, fold(semantics, items[:cut]), fold(semantics, items[cut:])) == whole


@given(values)
def test_each_semantics_means_what_it_says(items: list) -> None:
    if not items:
        assert fold(Semantics.SET, items) is None
        return
    assert fold(Semantics.INCREMENT, items) == sum(Decimal(v) for v in items)
    assert fold(Semantics.SET, items) == Decimal(items[-1])
    assert fold(Semantics.MAX, items) == max(Decimal(v) for v in items)


def test_floats_fold_exactly_by_their_decimal_form() -> None:
    assert fold(Semantics.INCREMENT, [0.1, 0.2]) == Decimal("0.3")


def test_default_catalogue_matches_the_seed() -> None:
    catalogue = MetricCatalogue.default()
    assert catalogue["devices"].price_lookup_key == "device_usage"
    assert catalogue["devices"].semantics is Semantics.SET
    assert catalogue["mqtt_messages"].semantics is Semantics.INCREMENT
    assert catalogue["storage_gb"].semantics is Semantics.MAX
    assert catalogue["api_requests"].semantics is Semantics.INCREMENT
    assert catalogue["storage_gb"].to_billable(2.5) == 3


def test_exact_metrics_refuse_to_truncate() -> None:
    with pytest.raises(NotWholeNumberError, match="whole numbers"):
        MetricCatalogue.default()["mqtt_messages"].to_billable(1.5)
    assert MetricCatalogue.default()["mqtt_messages"].to_billable(15000.0) == 15000


@pytest.mark.parametrize(
    ("rule", "expected"), [(Rounding.CEIL, 3), (Rounding.FLOOR, 2), (Rounding.HALF_UP, 3)]
)
def test_rounding_rules(rule: Rounding, expected: int) -> None:
    definition = MetricCatalogue.default()["storage_gb"].model_copy(update={"rounding": rule})
    assert definition.to_billable(2.5) == expected


def test_operators_add_metrics_through_configuration() -> None:
    extra = (
        '[{"name": "gpu_hours", "unit": "hour", "kind": "counter", "semantics": "increment",'
        ' "price_lookup_key": "gpu_hours", "meter_event_name": "gpu_hours"}]'
    )
    catalogue = MetricCatalogue.from_config(extra)
    assert set(catalogue) == {"devices", "mqtt_messages", "storage_gb", "api_requests", "gpu_hours"}
    assert isinstance(catalogue["gpu_hours"], MetricDefinition)


@pytest.mark.parametrize("bad", ["not json", "{}", '[{"name": "X"}]'])
def test_bad_metric_configuration_is_a_clear_error(bad: str) -> None:
    with pytest.raises(SchemaError):
        MetricCatalogue.from_config(bad)
