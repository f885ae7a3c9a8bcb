"""Issue 12, point 3: every common mistake gets one line on stderr, never a traceback.

Each test runs the installed `usage-collector` script as a real process and checks the exit
code, that stderr is exactly one line starting ``usage-collector:``, and that neither stream
holds a traceback (a secret in the URL stays masked).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.binaries import free_port
from tests.support.collector_process import clean_environment, collector_script
from tests.support.postgres import PostgresServer

PASSWORD = "pw-not-for-eyes-4711"


def run(tmp_path: Path, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [collector_script(), *argv],
        env=clean_environment(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The single stderr line of a failed command (asserting everything around it)."""
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, everything
    assert done.returncode == exit_code, everything
    assert done.stdout == "", everything
    lines = done.stderr.splitlines()
    assert len(lines) == 1, everything
    assert lines[0].startswith("usage-collector: "), everything
    return lines[0]


def empty_sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"


NOT_MIGRATED = "usage-collector: database not migrated: run usage-collector db upgrade"


@pytest.mark.parametrize(
    "argv",
    [
        ["customers", "link", "acme", "cus_abc123"],
        ["customers", "list"],
        ["keys", "create", "--role", "viewer"],
    ],
)
def test_commands_before_db_upgrade_say_database_not_migrated(
    argv: list[str], tmp_path: Path
) -> None:
    done = run(tmp_path, *argv, COLLECTOR_DATABASE_URL=empty_sqlite(tmp_path))
    assert one_line(done, 1) == NOT_MIGRATED


def test_tokens_create_before_migration_names_the_real_cause(
    postgres_url: str, tmp_path: Path
) -> None:
    """It used to say "the database is unavailable" while the tables were simply missing."""
    done = run(
        tmp_path, "tokens", "create", "--customer", "acme", COLLECTOR_DATABASE_URL=postgres_url
    )
    assert one_line(done, 1) == NOT_MIGRATED


def test_stripe_verify_before_db_upgrade_says_not_migrated_before_calling_stripe(
    tmp_path: Path,
) -> None:
    done = run(
        tmp_path,
        "stripe",
        "verify",
        COLLECTOR_DATABASE_URL=empty_sqlite(tmp_path),
        COLLECTOR_STRIPE_API_KEY="sk_test_" + "k" * 24,
        COLLECTOR_STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}",
    )
    assert one_line(done, 1) == NOT_MIGRATED


def test_a_database_behind_head_is_not_migrated(tmp_path: Path) -> None:
    url = empty_sqlite(tmp_path)
    assert (
        run(tmp_path, "db", "upgrade", "--revision", "0003", COLLECTOR_DATABASE_URL=url).returncode
        == 0
    )
    done = run(tmp_path, "keys", "list", COLLECTOR_DATABASE_URL=url)
    assert one_line(done, 1) == NOT_MIGRATED


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["serve"]])
def test_unreachable_postgresql_is_one_line_naming_the_url_with_password_masked(
    argv: list[str], tmp_path: Path
) -> None:
    port = free_port()
    url = f"postgresql://metering:{PASSWORD}@127.0.0.1:{port}/usage"
    if argv == ["serve"]:
        argv = ["serve", "--port", str(free_port())]
    line = one_line(run(tmp_path, *argv, COLLECTOR_DATABASE_URL=url), 1)
    assert line.startswith("usage-collector: cannot reach database postgresql+asyncpg://metering:")
    assert f"@127.0.0.1:{port}/usage: connection refused" in line
    assert PASSWORD not in line


def test_a_missing_database_on_a_real_server_is_one_line(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_database")
    line = one_line(run(tmp_path, "db", "upgrade", COLLECTOR_DATABASE_URL=url), 1)
    assert 'database "no_such_database" does not exist' in line
    assert postgres_server.password not in line
    assert f"@{postgres_server.host}:{postgres_server.port}/no_such_database:" in line


def test_a_mysql_url_is_an_unsupported_database_url(tmp_path: Path) -> None:
    url = f"mysql://metering:{PASSWORD}@127.0.0.1/usage"
    line = one_line(run(tmp_path, "db", "upgrade", COLLECTOR_DATABASE_URL=url), 2)
    assert line.startswith(
        "usage-collector: invalid setting COLLECTOR_DATABASE_URL: unsupported database URL "
        "mysql://metering:"
    )
    assert "use postgresql+asyncpg://" in line
    assert "sqlite+aiosqlite:///" in line
    assert PASSWORD not in line


def test_a_bare_file_path_is_an_unsupported_database_url(tmp_path: Path) -> None:
    path = str(tmp_path / "usage.db")
    line = one_line(run(tmp_path, "tokens", "list", COLLECTOR_DATABASE_URL=path), 2)
    assert "invalid setting COLLECTOR_DATABASE_URL: unsupported database URL" in line
    assert f"sqlite+aiosqlite:///{path}" in line


def test_sqlite_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    url = f"sqlite+aiosqlite:///{missing / 'usage.db'}"
    for argv in (["db", "upgrade"], ["keys", "list"]):
        line = one_line(run(tmp_path, *argv, COLLECTOR_DATABASE_URL=url), 1)
        assert line.endswith(f"directory {missing} does not exist"), line
    assert not missing.exists()


def test_an_unknown_log_level_is_a_settings_error_naming_the_variable(tmp_path: Path) -> None:
    done = run(tmp_path, "db", "current", COLLECTOR_LOG_LEVEL="verbose")
    assert one_line(done, 2) == (
        "usage-collector: invalid setting COLLECTOR_LOG_LEVEL: "
        "must be one of debug, info, warning, error (got 'verbose')"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[{", "extra metrics are not valid JSON"),
        ('[{"name": 1}]', "extra metric #0 is invalid: name: Input should be a valid string"),
    ],
)
def test_invalid_extra_metrics_is_a_settings_error_not_a_traceback(
    value: str, problem: str, tmp_path: Path
) -> None:
    line = one_line(run(tmp_path, "db", "current", COLLECTOR_EXTRA_METRICS=value), 2)
    assert line.startswith(f"usage-collector: invalid setting COLLECTOR_EXTRA_METRICS: {problem}")


def test_debug_shows_the_traceback_with_the_password_masked(tmp_path: Path) -> None:
    url = f"postgresql://metering:{PASSWORD}@127.0.0.1:{free_port()}/usage"
    done = run(tmp_path, "--debug", "db", "upgrade", COLLECTOR_DATABASE_URL=url)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("usage-collector: cannot reach database")
    assert PASSWORD not in done.stdout + done.stderr


def test_usage_mistakes_keep_clicks_usage_text_and_exit_2(tmp_path: Path) -> None:
    done = run(tmp_path, "forwarding", "rebill", COLLECTOR_DATABASE_URL=empty_sqlite(tmp_path))
    assert done.returncode == 2
    assert "give exactly one of --batch or --customer" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
