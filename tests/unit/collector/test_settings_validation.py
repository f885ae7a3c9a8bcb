"""Issue 12, point 3: invalid settings are refused with one line naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from collector.cli.errors import setting_errors
from collector.settings import CollectorSettings

PASSWORD = "pw-not-for-eyes-4711"


def errors(**settings: str) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        CollectorSettings(**settings)  # type: ignore[arg-type]
    return setting_errors(caught.value)


def test_an_unknown_log_level_names_the_variable_and_the_choices() -> None:
    assert errors(log_level="verbose") == [
        "invalid setting COLLECTOR_LOG_LEVEL: "
        "must be one of debug, info, warning, error (got 'verbose')"
    ]


def test_log_levels_are_case_insensitive() -> None:
    assert CollectorSettings(log_level=" WARNING ").log_level == "warning"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("[{", "extra metrics are not valid JSON: Expecting property name"),
        ("{}", "extra metrics must be a JSON list of metric definitions"),
        (
            '[{"name": 1}]',
            "extra metric #0 is invalid: name: Input should be a valid string (and 5 more)",
        ),
    ],
)
def test_invalid_extra_metrics_give_the_first_problem_on_one_line(value: str, line: str) -> None:
    (only,) = errors(extra_metrics=value)
    assert only.startswith(f"invalid setting COLLECTOR_EXTRA_METRICS: {line}")
    assert "\n" not in only


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://metering:{PASSWORD}@db/usage",
        f"postgresql+psycopg2://metering:{PASSWORD}@db/usage",
        "oracle://db/usage",
    ],
)
def test_unsupported_database_urls_are_named_with_the_password_masked(url: str) -> None:
    (only,) = errors(database_url=url)
    assert only.startswith("invalid setting COLLECTOR_DATABASE_URL: unsupported database URL ")
    assert "use postgresql+asyncpg://" in only
    assert PASSWORD not in only


def test_a_bare_path_is_refused_with_the_url_it_should_be() -> None:
    (only,) = errors(database_url="/var/lib/usage/usage.db")
    assert "sqlite+aiosqlite:////var/lib/usage/usage.db" in only


def test_an_unparsable_url_with_a_secret_is_not_echoed() -> None:
    (only,) = errors(database_url=f"metering:{PASSWORD}@db/usage")
    assert PASSWORD not in only
    assert "unsupported database URL" in only


@pytest.mark.parametrize(
    ("url", "effective"),
    [
        ("postgresql://u:p@db/usage", "postgresql+asyncpg://u:p@db/usage"),
        ("postgres://u:p@db/usage", "postgresql+asyncpg://u:p@db/usage"),
        ("postgresql+asyncpg://u:p@db/usage", "postgresql+asyncpg://u:p@db/usage"),
        ("sqlite:///usage.db", "sqlite+aiosqlite:///usage.db"),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_supported_database_urls_get_their_async_driver(url: str, effective: str) -> None:
    assert CollectorSettings(database_url=url).async_database_url() == effective  # type: ignore[arg-type]
