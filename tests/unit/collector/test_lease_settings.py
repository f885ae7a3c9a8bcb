"""The lease settings: a renewal that fits twice in the lease, chosen for a short lease if unset."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.settings import CollectorSettings


def test_the_defaults_are_a_short_lease_renewed_three_times_over() -> None:
    settings = CollectorSettings()

    assert (settings.stripe_lease, settings.stripe_lease_renewal) == (15.0, 5.0)


def test_a_short_lease_without_a_renewal_is_renewed_every_third() -> None:
    assert CollectorSettings(stripe_lease="6s").stripe_lease_renewal == 2.0


def test_a_renewal_longer_than_half_the_lease_names_both_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        CollectorSettings(stripe_lease="6s", stripe_lease_renewal="4s")

    assert "COLLECTOR_STRIPE_LEASE_RENEWAL" in str(caught.value)
    assert "COLLECTOR_STRIPE_LEASE" in str(caught.value)


def test_a_call_may_take_longer_than_the_lease() -> None:
    settings = CollectorSettings(stripe_lease="6s", stripe_timeout="30s")

    assert settings.call_slot_lease == 36.0
