"""Redaction: registered values and secret shapes never reach a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from common import redaction
from common.logs import configure_logging
from common.redaction import forget_secrets, redact, register_secret


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()
    configure_logging("info")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key sk_test_51AbCdEfGh1234 refused", "sk_test_51AbCdEfGh1234"),
        ("live rk_live_abcdef123456", "rk_live_abcdef123456"),
        ("whsec_abcdefABCDEF0123 bad", "whsec_abcdefABCDEF0123"),
        ("token umt_Zx8-_qwertyuiop0123", "umt_Zx8-_qwertyuiop0123"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("postgresql+asyncpg://billing:hunter2pw@db:5432/x", "hunter2pw"),
        ("dsn host=db password=hunter2pw user=x", "hunter2pw"),
    ],
)
def test_secret_shapes_are_hidden(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "[REDACTED]" in redact(text)


def test_registered_values_are_hidden_anywhere() -> None:
    register_secret("opaque-value-42", None, "")
    assert redact("a opaque-value-42 b") == "a [REDACTED] b"
    register_secret("abc")
    assert redact("abc") == "abc"


def test_log_lines_and_tracebacks_are_redacted() -> None:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream)
    register_secret("plain-secret-value")
    log = structlog.get_logger("test")
    try:
        raise RuntimeError("connect failed for postgresql://u:pw-in-url@h/db plain-secret-value")
    except RuntimeError:
        log.exception("boom", key="sk_test_abcdefgh1234", nested={"k": ["whsec_abcdefgh"]})
        logging.getLogger("stdlib").exception("stdlib plain-secret-value")
    output = stream.getvalue()
    for secret in ("pw-in-url", "plain-secret-value", "sk_test_abcdefgh1234", "whsec_abcdefgh"):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert "RuntimeError" in lines[0]["exception"]
    assert len(lines) == 2


FRAGMENTS = st.sampled_from(
    [
        "sk_test_",
        "rk_live_",
        "whsec_",
        "umt_",
        "umk_",
        "Bearer ",
        "BASIC ",
        "://",
        "user:",
        "@",
        "password=",
        "PWD: ",
        "passwd:",
        "abcdEFGH1234",
        " ",
        "/",
        "cust_1",
    ]
)


@given(st.lists(FRAGMENTS, max_size=12).map("".join))
def test_the_marker_scan_never_skips_text_a_pattern_would_change(text):
    expected = text
    for pattern, replacement in redaction._PATTERNS:
        expected = pattern.sub(replacement, expected)

    assert redact(text) == expected
