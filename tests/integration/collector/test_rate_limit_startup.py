"""The start-up log says where the rate limits hold: the whole deployment, or one process."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.support.collector import run_collector


def test_the_start_up_log_says_sqlite_means_one_replica(database_url: str) -> None:
    with capture_logs() as logs, run_collector(database_url):
        pass
    said = [str(e["event"]) for e in logs if e["log_level"] == "info"]
    if database_url.startswith("sqlite"):
        assert any(line.startswith("SQLite means one replica") for line in said), said
    else:
        assert "rate limits are shared by every replica through PostgreSQL" in said, said
