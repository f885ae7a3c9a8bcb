"""Fixtures shared by every test: servers on loopback, and structlog inside pytest's capture."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from tests.support.postgres import PostgresServer, create_database, run_postgres


def log_through_pytest() -> None:
    """Send structlog's events through stdlib logging, which pytest captures during a test and
    sends to a null handler between tests.

    structlog's default prints to the ``sys.stdout`` it found when first imported: the
    terminal's, when a conftest imported it. An app's thread that logged between pytest's
    phases (``leadership_acquired``, once its election ran) then wrote straight to the terminal.
    ``structlog.testing.capture_logs`` still sees every event; a test that calls
    ``configure_logging`` changes this until the next test starts.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    log_through_pytest()


@pytest.fixture(autouse=True)
def logs_through_pytest() -> None:
    """Undo what an earlier test's ``configure_logging`` left, e.g. a stream now closed."""
    log_through_pytest()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with run_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return create_database(postgres_server, f"t_{uuid.uuid4().hex[:12]}")
