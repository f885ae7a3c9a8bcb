"""The start-up log can name the database: only its password is a secret (issue 10, item 9)."""

from __future__ import annotations

from collector.secrets import secret_values
from collector.settings import CollectorSettings


def test_only_the_database_password_is_secret_not_the_whole_url() -> None:
    settings = CollectorSettings(
        database_url="postgresql://usage:s3cret-pw@db.internal:5432/usage",
        stripe_api_key="sk_test_abc123",
    )
    values = secret_values(settings)
    assert "s3cret-pw" in values
    assert "sk_test_abc123" in values
    assert not any("db.internal" in value for value in values)


def test_a_database_without_a_password_has_no_secret() -> None:
    settings = CollectorSettings(database_url="sqlite+aiosqlite:////var/lib/usage/usage.db")
    assert secret_values(settings) == []
