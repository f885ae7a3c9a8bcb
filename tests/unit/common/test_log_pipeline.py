"""Our own log lines skip the stdlib detour but read, filter and redact as before (issue 14)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from common import redaction
from common.logs import _redact, _Stamp, configure_logging, emit
from common.redaction import forget_secrets, redact_event, register_secret


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()
    configure_logging("info")


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(text)["event"] for text in stream.getvalue().splitlines()]


def test_a_line_has_the_event_its_fields_level_and_time() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.get_logger("x").info("report_stored", customer_id="c1", metrics=["a"], n=1)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["event"] == "report_stored"
    assert (line["customer_id"], line["metrics"], line["n"]) == ("c1", ["a"], 1)
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_levels_below_the_configured_one_are_dropped() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    log = structlog.get_logger("x")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    logging.getLogger("lib").info("stdlib i")
    logging.getLogger("lib").warning("stdlib w")
    events = _events(stream)
    assert events == ["w", "e", "stdlib w"]


def test_captured_logs_still_see_debug_when_the_level_is_info() -> None:
    """Tests capture a repeat's DEBUG ``report_stored`` after something configured INFO."""
    configure_logging("info", stream=io.StringIO())
    with capture_logs() as logs:
        structlog.get_logger("x").debug("report_stored", result="duplicate")
    assert [entry["log_level"] for entry in logs] == ["debug"]


def test_structlog_and_stdlib_lines_share_one_stream_in_order() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    for n in range(3):
        structlog.get_logger("x").info("ours", n=n)
        logging.getLogger("lib").warning("theirs %d", n)
    events = _events(stream)
    assert events == ["ours", "theirs 0", "ours", "theirs 1", "ours", "theirs 2"]


FRAGMENTS = st.sampled_from(
    [
        "sk_test_",
        "rk_live_",
        "whsec_",
        "umt_",
        "UMK_",
        "Bearer ",
        "BASIC ",
        "bea\u017fer",
        "ba\u017fic ",
        "pa\u017f\u017fword=",
        "\u212a",
        "\u0131",
        "\u0130",
        "://",
        "user:",
        "@",
        "password=",
        "PWD: ",
        "abcdEFGH1234",
        " ",
        "/",
        "\n",
        "cust_1",
        "opaque-secret-99",
    ]
)
texts = st.lists(FRAGMENTS, max_size=8).map("".join) | st.text(max_size=20)


@given(texts)
def test_the_quick_marker_check_matches_the_expression(text: str) -> None:
    assert redaction._may_hold_shape(text) == (redaction._MARKERS.search(text) is not None)


values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        texts,
        st.integers(),
        st.floats(allow_nan=False),
        st.booleans(),
        st.none(),
        st.uuids(),
        st.tuples(texts),
        st.frozensets(st.integers(0, 3)),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), values, max_size=6), st.booleans())
def test_one_scan_redacts_exactly_what_the_walk_redacts(
    event: dict[str, Any], secret: bool
) -> None:
    if secret:
        register_secret("opaque-secret-99")
    expected = redact_event(None, "info", dict(event))
    assert _redact(None, "info", dict(event)) == expected


def test_a_registered_secret_in_a_nested_value_is_hidden() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    register_secret("opaque-secret-99")
    structlog.get_logger("x").info("e", nested={"k": ["x opaque-secret-99"]}, id=uuid.UUID(int=1))
    assert "opaque-secret-99" not in stream.getvalue()
    assert "[REDACTED]" in stream.getvalue()


@given(st.integers(946_684_800 * 10**9, 4_102_444_800 * 10**9 - 1))
def test_time_stamps_are_written_as_structlog_writes_them(nanoseconds: int) -> None:
    second, micro = divmod(nanoseconds // 1000, 1_000_000)
    moment = datetime.fromtimestamp(second, UTC).replace(microsecond=micro)
    stamp = _Stamp()
    stamp.text(nanoseconds - 10**9)
    assert stamp.text(nanoseconds) == moment.isoformat().replace("+00:00", "Z")
    assert stamp.text(second * 10**9) == moment.replace(microsecond=0).isoformat()[:-6] + "Z"


@given(st.lists(texts, max_size=5), st.lists(texts, max_size=5), st.booleans())
def test_texts_remembered_as_clean_answer_as_a_fresh_scan(
    earlier: list[str], later: list[str], registered_between: bool
) -> None:
    forget_secrets()
    redaction.all_unchanged(earlier)
    redaction.all_unchanged(later)
    if registered_between:
        register_secret("opaque-secret-99")
    if redaction.all_unchanged(later):  # False may be a false alarm: the caller then walks
        assert all(redaction.redact(t) == t for t in later)


def test_a_text_logged_clean_is_redacted_once_a_secret_in_it_is_registered() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    log = structlog.get_logger("x")
    log.info("e", customer_id="cust opaque-secret-99")
    register_secret("opaque-secret-99")
    log.info("e", customer_id="cust opaque-secret-99")
    lines = [json.loads(text)["customer_id"] for text in stream.getvalue().splitlines()]
    assert lines == ["cust opaque-secret-99", "cust [REDACTED]"]


@pytest.fixture
def logged() -> tuple[io.StringIO, Any]:
    """A stream logging is configured to at INFO, and a logger writing to it."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    return stream, structlog.get_logger("x")


async def test_lines_of_one_pass_of_the_loop_are_written_when_it_ends_in_order(
    logged: tuple[io.StringIO, Any],
) -> None:
    stream, log = logged
    log.info("first")
    log.info("second")
    assert stream.getvalue() == ""
    await asyncio.sleep(0)
    assert _events(stream) == ["first", "second"]
    log.info("ours")
    logging.getLogger("lib").warning("theirs")
    log.info("ours again")
    await asyncio.sleep(0)
    assert _events(stream)[2:] == ["ours", "theirs", "ours again"]


async def test_a_line_from_a_thread_without_a_loop_is_written_at_once_after_those_held(
    logged: tuple[io.StringIO, Any],
) -> None:
    stream, log = logged
    log.info("held")
    thread = threading.Thread(target=log.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert _events(stream) == ["held", "from a thread"]


async def test_a_flush_writes_the_lines_held(logged: tuple[io.StringIO, Any]) -> None:
    stream, log = logged
    log.info("held")
    logging.getLogger().handlers[0].flush()
    assert _events(stream) == ["held"]


async def test_a_warning_is_written_at_once_after_the_lines_held(
    logged: tuple[io.StringIO, Any],
) -> None:
    """A warning may be the last line before a crash (the agent's test crash points are)."""
    stream, log = logged
    log.info("held")
    log.warning("last words")
    assert _events(stream) == ["held", "last words"]


async def test_configuring_again_writes_what_the_old_stream_held(
    logged: tuple[io.StringIO, Any],
) -> None:
    stream, log = logged
    log.info("held")
    configure_logging("info", stream=io.StringIO())
    assert _events(stream) == ["held"]


def _lines_without_time(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    for line in lines:
        line.pop("timestamp")
    return lines


@pytest.mark.parametrize("level", ["debug", "info", "warning"])
def test_an_emitted_line_is_the_line_the_logger_writes(level: str) -> None:
    """``emit`` writes what ``log.<method>`` writes, and drops what it drops."""
    fields = {"customer_id": "c1", "metrics": ["a", "b"], "partial": False, "n": 1}
    by_logger, by_emit = io.StringIO(), io.StringIO()
    for stream, write in (
        (by_logger, lambda method: getattr(structlog.get_logger("x"), method)("e", **fields)),
        (by_emit, lambda method: emit(method, "e", dict(fields))),
    ):
        configure_logging(level, stream=stream)
        for method in ("debug", "info", "warning", "error"):
            write(method)
        logging.getLogger().handlers[0].flush()
    assert _lines_without_time(by_emit) == _lines_without_time(by_logger)
    assert by_emit.getvalue().count("\n") == {"debug": 4, "info": 3, "warning": 2}[level]


def test_an_emitted_line_is_captured_and_redacted_as_any_other() -> None:
    register_secret("umt_supersecretvalue123")
    with capture_logs() as logs:
        emit("debug", "report_stored", {"customer_id": "c1"})
    assert logs == [{"event": "report_stored", "customer_id": "c1", "log_level": "debug"}]
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    emit("info", "report_stored", {"instance_id": "i umt_supersecretvalue123"})
    logging.getLogger().handlers[0].flush()
    assert "supersecretvalue" not in stream.getvalue()
    assert json.loads(stream.getvalue())["event"] == "report_stored"
