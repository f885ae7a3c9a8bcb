"""The body-shape check measures JSON, not bytes: brackets and digits inside strings are text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.api.body_shape import MAX_DEPTH, MAX_DIGITS, check_shape
from collector.errors import BadRequest

texts = st.text(alphabet=st.sampled_from('[]{}0123456789"\\ab'), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**50), 10**50) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def longest_number(value: Any) -> int:
    if isinstance(value, list):
        return max((longest_number(v) for v in value), default=0)
    if isinstance(value, dict):
        return max((longest_number(v) for v in value.values()), default=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return len(str(abs(value)))
    return 0


@given(json_values, st.integers(0, 40))
def test_the_check_refuses_exactly_the_bodies_over_a_limit(value: Any, wrap: int) -> None:
    wrapped = value
    for _ in range(wrap):
        wrapped = [wrapped]
    body = json.dumps(wrapped).encode()
    too_deep = depth(wrapped) > MAX_DEPTH
    too_long = longest_number(wrapped) > MAX_DIGITS
    if too_deep or too_long:
        with pytest.raises(BadRequest):
            check_shape(body)
    else:
        check_shape(body)


def test_brackets_and_digits_inside_strings_are_text() -> None:
    check_shape(json.dumps({"name": "[" * 100 + "9" * 100}).encode())
