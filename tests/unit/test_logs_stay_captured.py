"""A log line written while pytest's capture is suspended, as between a test's phases when an
app's background thread logs, must not reach the terminal (``tests/conftest.py``)."""

from __future__ import annotations

import os
import sys

import pytest
import structlog


def test_a_log_line_between_test_phases_never_reaches_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    read, write = os.pipe()
    saved = (os.dup(1), os.dup(2))
    with capsys.disabled():  # file descriptors 1 and 2 are the terminal's again, as between phases
        os.dup2(write, 1)
        os.dup2(write, 2)
        try:
            structlog.get_logger("collector.leader").warning(
                "leadership_acquired", identity="host-1", tasks=["ageing"]
            )
            sys.stdout.flush()
            sys.stderr.flush()
            sys.__stdout__.flush()
            sys.__stderr__.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, write):
                os.close(fd)
    with os.fdopen(read, "rb") as leaked:
        assert b"leadership_acquired" not in leaked.read()
