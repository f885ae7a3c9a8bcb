"""Issue 12, point 5: libraries that log every call at INFO are held at WARNING, unless debug."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from common.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    configure_logging("info")


def test_each_stripe_call_logs_nothing_at_info(stream: io.StringIO) -> None:
    configure_logging("info", json=False, stream=stream, quiet=("stripe", "httpx"))
    logging.getLogger("httpx").info("HTTP Request: POST https://api.stripe.com/v1/x")
    logging.getLogger("stripe").info("Request to Stripe api")
    logging.getLogger("httpx._client").info("a child logger follows its parent")
    logging.getLogger("collector").info("our own line")
    logging.getLogger("httpx").warning("a warning still shows")
    text = stream.getvalue()
    assert "our own line" in text
    assert "a warning still shows" in text
    assert "Request" not in text
    assert "child" not in text


def test_debug_lets_the_libraries_through(stream: io.StringIO) -> None:
    configure_logging("debug", json=False, stream=stream, quiet=("httpx",))
    logging.getLogger("httpx").info("HTTP Request: GET /")
    assert "HTTP Request" in stream.getvalue()


def test_the_default_quiets_nothing_and_undoes_an_earlier_call(stream: io.StringIO) -> None:
    """The agent calls it without ``quiet``: its library logging is as it always was."""
    configure_logging("info", json=False, stream=io.StringIO(), quiet=("httpx",))
    configure_logging("info", json=False, stream=stream)
    logging.getLogger("httpx").info("HTTP Request: GET /")
    assert "HTTP Request" in stream.getvalue()
