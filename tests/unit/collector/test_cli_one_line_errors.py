"""The top-level group turns every failure into one line (and a traceback only on request)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from collector.cli.errors import OneLineErrors
from collector.errors import DatabaseNotMigrated, StripeNotConfigured


def group_raising(error: Exception) -> click.Group:
    @click.group(cls=OneLineErrors)
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        ctx.obj = {"debug": debug}

    @cli.command()
    def fail() -> None:
        raise error

    return cli


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (DatabaseNotMigrated("database not migrated: run x"), "database not migrated: run x", 1),
        (
            StripeNotConfigured("COLLECTOR_STRIPE_API_KEY is not set"),
            "COLLECTOR_STRIPE_API_KEY is not set",
            2,
        ),
        (click.ClickException("no batch 7"), "no batch 7", 1),
        (
            RuntimeError("boom\nsecond line"),
            "unexpected RuntimeError: boom (run usage-collector --debug ... for the traceback)",
            1,
        ),
    ],
)
def test_a_failure_is_one_line_with_its_exit_code(error: Exception, line: str, code: int) -> None:
    result = CliRunner().invoke(group_raising(error), ["fail"])
    assert result.exit_code == code
    assert result.stderr == f"usage-collector: {line}\n"
    assert result.stdout == ""


def test_a_secret_in_an_unexpected_error_is_redacted() -> None:
    error = RuntimeError("could not connect to postgresql://u:hunter2-secret@db/usage")
    result = CliRunner().invoke(group_raising(error), ["fail"])
    assert "hunter2-secret" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_debug_prints_the_redacted_traceback_first() -> None:
    error = RuntimeError("could not connect to postgresql://u:hunter2-secret@db/usage")
    result = CliRunner().invoke(group_raising(error), ["--debug", "fail"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.splitlines()[-1].startswith("usage-collector: unexpected RuntimeError")
    assert "hunter2-secret" not in result.stderr


def test_usage_errors_keep_clicks_own_text() -> None:
    result = CliRunner().invoke(group_raising(click.UsageError("give one of --a or --b")), ["fail"])
    assert result.exit_code == 2
    assert "Error: give one of --a or --b" in result.stderr
