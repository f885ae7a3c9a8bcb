"""Which setting values are secret, so logging can hide them wherever they turn up."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from collector.settings import CollectorSettings
from common.redaction import register_secret


def secret_values(settings: CollectorSettings) -> list[str]:
    """Every ``SecretStr`` setting, the database URL's password instead of the whole URL.

    The URL itself is not secret once its password is hidden; hiding it whole would leave an
    operator unable to tell from the start-up log which database a collector uses.
    """
    values = [
        value.get_secret_value()
        for name, value in ((n, getattr(settings, n)) for n in type(settings).model_fields)
        if isinstance(value, SecretStr) and name != "database_url"
    ]
    try:
        password = make_url(settings.async_database_url()).password
    except ArgumentError:
        password = None
    if password:
        values.append(str(password))
    return [value for value in values if value]


def register_settings_secrets(settings: CollectorSettings) -> None:
    """Have every log line redact this process's secrets (call once settings are loaded)."""
    register_secret(*secret_values(settings))
