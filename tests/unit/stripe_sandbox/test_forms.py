from __future__ import annotations

from urllib.parse import urlencode

import pytest

from collector.stripe_sandbox import forms


def test_nested_brackets_become_dicts_and_lists() -> None:
    raw = (
        "items[0][price]=p1&items[1][price]=p2&items[1][quantity]=3"
        "&payload[value]=5&expand[]=tiers&expand[]=product&metadata[k]=v"
    )

    decoded = forms.decode(raw)

    assert decoded["items"] == [{"price": "p1"}, {"price": "p2", "quantity": "3"}]
    assert decoded["payload"] == {"value": "5"}
    assert forms.expand_list(decoded) == ["tiers", "product"]
    assert decoded["metadata"] == {"k": "v"}


def test_indexed_lists_keep_numeric_order() -> None:
    pairs = [(f"tiers[{i}][up_to]", str(i)) for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)]

    decoded = forms.decode(urlencode(pairs))

    assert [t["up_to"] for t in decoded["tiers"]] == [str(i) for i in range(11)]


def test_malformed_keys_are_rejected() -> None:
    with pytest.raises(forms.FormError):
        forms.decode("a]b=1")
