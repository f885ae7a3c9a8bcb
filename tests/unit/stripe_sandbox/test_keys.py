from __future__ import annotations

import pytest

from collector.stripe_sandbox import errors
from collector.stripe_sandbox.keys import DEFAULT_API_KEY, check, masked


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("sk_test_abcdefgh1234", "sk_test_********1234"),
        ("sk_live_abcdefgh1234", "sk_live_********1234"),
        ("rk_test_xy12", "rk_test_****"),
        ("pk_test_wrong", "pk_test_*rong"),
        ("not-a-key-9876", "**********9876"),
        ("abc", "***"),
    ],
)
def test_keys_are_masked_like_stripe_quotes_them(key: str, shown: str) -> None:
    assert masked(key) == shown


def test_only_the_accepted_key_passes() -> None:
    check(DEFAULT_API_KEY, DEFAULT_API_KEY)
    with pytest.raises(errors.StripeAPIError) as wrong:
        check("sk_test_other", DEFAULT_API_KEY)
    assert wrong.value.status == 401
    assert wrong.value.body()["error"]["message"] == "Invalid API Key provided: sk_test_*ther"
    with pytest.raises(errors.StripeAPIError) as missing:
        check(None, DEFAULT_API_KEY)
    assert missing.value.status == 401
