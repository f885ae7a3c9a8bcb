from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.stripe_sandbox import pricing


def _tiered(mode: str, raw: list[dict[str, Any]]) -> dict[str, Any]:
    return {"billing_scheme": "tiered", "tiers_mode": mode, "tiers": pricing.parse_tiers(raw)}


DEVICES = [{"up_to": "5", "unit_amount": "0"}, {"up_to": "inf", "unit_amount": "500"}]


@pytest.mark.parametrize(("devices", "cents"), [(0, 0), (5, 0), (6, 500), (8, 1500)])
def test_graduated_first_five_devices_free(devices: int, cents: int) -> None:
    assert pricing.amount(_tiered("graduated", DEVICES), devices) == cents


def test_volume_prices_every_unit_at_the_reached_tier() -> None:
    price = _tiered(
        "volume",
        [
            {"up_to": "10", "unit_amount": "100"},
            {"up_to": "inf", "unit_amount": "50", "flat_amount": "1000"},
        ],
    )

    assert pricing.amount(price, 10) == 1000
    assert pricing.amount(price, 11) == 11 * 50 + 1000


def test_graduated_flat_amounts_apply_per_entered_tier() -> None:
    price = _tiered(
        "graduated",
        [
            {"up_to": "2", "unit_amount": "10", "flat_amount": "100"},
            {"up_to": "inf", "unit_amount": "1", "flat_amount": "7"},
        ],
    )

    assert pricing.amount(price, 1) == 110
    assert pricing.amount(price, 5) == 100 + 20 + 7 + 3


@given(st.integers(0, 10**9), st.integers(1, 10**4))
def test_transform_rounds_as_told(quantity: int, divide_by: int) -> None:
    up = pricing.transform(quantity, {"divide_by": divide_by, "round": "up"})
    down = pricing.transform(quantity, {"divide_by": divide_by, "round": "down"})

    assert down * divide_by <= quantity <= up * divide_by
    assert up - down in (0, 1)
    assert (up == down) == (quantity % divide_by == 0)


def test_fractional_unit_amounts_round_half_up() -> None:
    price = {"billing_scheme": "per_unit", "unit_amount_decimal": "0.5"}

    assert pricing.amount(price, 3) == 2


def test_tiers_must_end_with_inf() -> None:
    with pytest.raises(ValueError, match="up_to"):
        pricing.parse_tiers([{"up_to": "5", "unit_amount": "1"}])
