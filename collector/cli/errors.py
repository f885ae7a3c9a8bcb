"""What an operator sees when a `usage-collector` command fails: one line, never a traceback.

Every failure leaves through :class:`OneLineErrors`, the top-level group, as
``usage-collector: <message>`` on stderr:

- invalid settings: one line per variable, ``invalid setting COLLECTOR_X: <what is wrong>``,
  exit 2;
- a :class:`CollectorError`: its detail (the adapters name the database URL, password masked,
  or say the database is not migrated), exit 2 when a setting must change, else 1;
- click's own errors: usage mistakes keep click's usage text and exit 2, the rest one line;
- anything else: its type and first line, exit 1.

``usage-collector --debug`` prints the traceback first, redacted like every log line.
"""

from __future__ import annotations

import traceback
from typing import IO, Any

import click
from pydantic import ValidationError

from collector.errors import CollectorError, StripeNotConfigured
from collector.settings import CollectorSettings
from common.redaction import redact

PROG = "usage-collector"
EXIT_FAILURE = 1
EXIT_CONFIGURATION = 2

# Errors only a changed setting fixes: configuration errors, like invalid settings.
CONFIGURATION_ERRORS: tuple[type[CollectorError], ...] = (StripeNotConfigured,)


class CommandFailed(click.ClickException):
    """A failure shown as ``usage-collector: <line>``, one line per line of ``message``."""

    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.format_message().splitlines() or [""]:
            click.echo(f"{PROG}: {redact(line)}", err=True, file=file)


class ConfigurationFailed(CommandFailed):
    """A failure only a changed setting fixes."""

    exit_code = EXIT_CONFIGURATION


def setting_errors(error: ValidationError) -> list[str]:
    """One line per invalid setting, naming the variable to fix (never the Python field)."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        message = str(item["msg"]).removeprefix("Value error, ")
        if field in CollectorSettings.model_fields:
            lines.append(f"invalid setting COLLECTOR_{field.upper()}: {message}")
        else:
            lines.append(f"invalid settings: {message}")
    return lines


def invalid_settings(error: ValidationError) -> ConfigurationFailed:
    return ConfigurationFailed("\n".join(setting_errors(error)))


def _one_line(error: Exception) -> CommandFailed:
    if isinstance(error, click.ClickException):
        failed = ConfigurationFailed if error.exit_code == EXIT_CONFIGURATION else CommandFailed
        return failed(error.format_message())
    if isinstance(error, CONFIGURATION_ERRORS):
        return ConfigurationFailed(error.detail)
    if isinstance(error, CollectorError):
        return CommandFailed(error.detail)
    first = (str(error).strip().splitlines() or [""])[0]
    detail = f": {first}" if first else ""
    return CommandFailed(
        f"unexpected {type(error).__name__}{detail} (run {PROG} --debug ... for the traceback)"
    )


def _debugging(ctx: click.Context) -> bool:
    return bool(isinstance(ctx.obj, dict) and ctx.obj.get("debug"))


class OneLineErrors(click.Group):
    """A group whose commands fail with one line on stderr (a traceback too under --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.UsageError):
            raise
        except Exception as exc:
            if _debugging(ctx):
                click.echo(redact("".join(traceback.format_exception(exc))).rstrip(), err=True)
            if isinstance(exc, CommandFailed):
                raise
            raise _one_line(exc) from exc
