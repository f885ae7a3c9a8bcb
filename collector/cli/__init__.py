"""`usage-collector`: serve the API and manage the database.

`serve` logs JSON lines (console text with COLLECTOR_LOG_JSON=false); every other command logs
console text to stderr and prints its result alone on stdout, as text or with `--output json`.
A failure is one line on stderr (see :mod:`collector.cli.errors`); `--debug` adds the traceback.
Every command that uses the database refuses one that is not migrated, except `serve`, which
migrates it first (unless `--no-migrate`: then readiness fails until `db upgrade` has run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import structlog
import uvicorn
from pydantic import ValidationError

from collector import json_lines
from collector.adapters.db.engine import create_engine, redacted
from collector.adapters.db.links import LinkStore
from collector.adapters.db.migrate import require_migrated, schema_state_of, upgrade
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import create_app
from collector.api.header_deadline import http_protocol
from collector.cli.billing import forwarding, instances
from collector.cli.credentials import keys, tokens
from collector.cli.customers import customers
from collector.cli.errors import CommandFailed, OneLineErrors, invalid_settings
from collector.cli.output import JSON, emit_json, fields, output_option
from collector.errors import CollectorError
from collector.secrets import register_settings_secrets
from collector.services.forwarding_setup import stripe_connection
from collector.services.forwarding_status import ForwardingStatusService
from collector.services.stripe_setup import SetupResult, StripeSetup, Verification
from collector.settings import CollectorSettings, load_settings
from common import __version__
from common.clock import SystemClock
from common.logs import configure_logging

log = structlog.get_logger("collector")

# Libraries that log every request or statement at INFO; held at WARNING unless
# COLLECTOR_LOG_LEVEL=debug, so one Stripe call is not three log lines.
QUIET_LOGGERS = (
    "stripe",
    "httpx",
    "httpcore",
    "urllib3",
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "alembic",
    "uvicorn.access",
)


def _settings(ctx: click.Context, *, server: bool = False, **overrides: Any) -> CollectorSettings:
    """Load the settings once per command and set up logging: JSON only for ``serve``."""
    try:
        settings = load_settings(ctx.obj.get("secrets_dir"), **overrides)
    except ValidationError as exc:
        raise invalid_settings(exc) from exc
    register_settings_secrets(settings)
    configure_logging(
        settings.log_level,
        json=server and settings.log_json,
        quiet=QUIET_LOGGERS,
        serializer=json_lines.dumps,
    )
    return settings


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="usage-collector")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="COLLECTOR_SECRETS_DIR",
    help="Directory of secret files named like the settings (e.g. collector_stripe_api_key).",
)
@click.option(
    "--debug",
    is_flag=True,
    help="On a failure, print the traceback (redacted) before the one-line message.",
)
@click.pass_context
def main(ctx: click.Context, secrets_dir: Path | None, debug: bool) -> None:
    """Usage collector: stores usage reports and forwards them to Stripe."""
    ctx.ensure_object(dict)
    ctx.obj["secrets_dir"] = secrets_dir
    ctx.obj["debug"] = debug
    ctx.obj["load_settings"] = _settings


main.add_command(tokens)
main.add_command(keys)
main.add_command(instances)
main.add_command(forwarding)
main.add_command(customers)


@main.command()
@click.option("--host", default=None, help="Bind address [default: COLLECTOR_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: COLLECTOR_PORT or 3100].")
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Apply pending database migrations before serving.",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, migrate: bool) -> None:
    """Serve the HTTP API with uvicorn."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = _settings(ctx, server=True, **overrides)
    url = settings.async_database_url()
    if migrate:
        done = upgrade(url)
        if done.before != done.after:
            log.info("database migrated", previous=done.before, revision=done.after)
    else:
        _warn_unless_migrated(url)
    log.info(
        "collector starting",
        host=settings.host,
        port=settings.port,
        database=redacted(url),
        stripe_mode=settings.stripe_mode.value,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=http_protocol(settings.header_read_timeout),
    )


def _warn_unless_migrated(url: str) -> None:
    """`serve --no-migrate`: say at start why readiness will fail; serving goes on regardless."""
    try:
        state = asyncio.run(schema_state_of(url))
    except CollectorError as exc:
        log.warning("database not reachable at start", detail=exc.detail)
        return
    if not state.migrated:
        log.warning(
            "database not migrated: /health/ready answers 503 until "
            "`usage-collector db upgrade` has run",
            revision=state.current,
            head=state.head,
        )


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION."""
    settings = _settings(ctx)
    url = settings.async_database_url()
    done = upgrade(url, revision)
    if done.before == done.after:
        click.echo(f"database {redacted(url)} is already at revision {done.after}")
    else:
        click.echo(
            f"database {redacted(url)} upgraded from {done.before or 'an empty schema'} "
            f"to revision {done.after}"
        )


@db.command("current")
@output_option
@click.pass_context
def db_current(ctx: click.Context, output: str) -> None:
    """Print the database's revision and the newest one this version knows."""
    settings = _settings(ctx)
    state = asyncio.run(schema_state_of(settings.async_database_url()))
    if output == JSON:
        emit_json({"current": state.current, "head": state.head, "migrated": state.migrated})
        return
    click.echo(
        fields(
            [
                ("current", state.current or "none"),
                ("head", state.head),
                ("state", state.describe()),
            ]
        )
    )


@main.group()
def stripe() -> None:
    """Stripe: the local sandbox, setup and verification."""


@stripe.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=12111, show_default=True)
@click.option("--webhook-url", default=None, help="Where to deliver signed webhook events.")
@click.option("--webhook-secret", default=None, help="whsec_... secret to sign them with.")
@click.option("--seed", type=int, default=None, help="Seed for injected faults.")
def stripe_sandbox(
    host: str, port: int, webhook_url: str | None, webhook_secret: str | None, seed: int | None
) -> None:
    """Run the Stripe-compatible sandbox (no Stripe account needed)."""
    try:
        from collector.stripe_sandbox import serve as serve_sandbox
    except ModuleNotFoundError as error:
        # The production image's wheel is built without it (Dockerfile.collector).
        if error.name != "collector.stripe_sandbox":
            raise
        raise CommandFailed(
            "the Stripe sandbox is not installed in this image: it is a development tool, left "
            "out of the production images; run it from a source checkout (pip install -e .)"
        ) from None

    configure_logging("info", json=False)
    click.echo(f"Stripe sandbox on http://{host}:{port} (point COLLECTOR_STRIPE_API_BASE at it)")
    serve_sandbox(host, port, webhook_url=webhook_url, webhook_secret=webhook_secret, seed=seed)


def _with_stripe_setup[T](
    settings: CollectorSettings, use: Callable[[StripeSetup], Awaitable[T]]
) -> T:
    """Run ``use`` against Stripe, closing the connection after (no key: StripeNotConfigured)."""
    connection = stripe_connection(settings)

    async def run() -> T:
        try:
            return await use(StripeSetup(StripeCatalog(connection.client), settings.catalogue()))
        finally:
            await connection.aclose()

    return asyncio.run(run())


@stripe.command("setup")
@click.option("--legacy", is_flag=True, help="Legacy metered prices (usage records), no meters.")
@output_option
@click.pass_context
def stripe_setup(ctx: click.Context, legacy: bool, output: str) -> None:
    """Create the product, meters and prices the catalogue needs; reuses what exists."""
    settings = _settings(ctx)
    result: SetupResult = _with_stripe_setup(settings, lambda setup: setup.apply(legacy=legacy))
    if output == JSON:
        emit_json(result)
        return
    click.echo(f"product  {result.product_id}")
    for event_name, meter_id in sorted(result.meters.items()):
        click.echo(f"meter    {meter_id}  {event_name}")
    for key, price_id in sorted(result.prices.items()):
        click.echo(f"price    {price_id}  {key}")
    for line in result.created:
        click.echo(f"created  {line}")
    for note in result.notes:
        click.echo(f"note     {note}")
    if not result.created:
        click.echo("nothing to create: Stripe already matches the catalogue")


@stripe.command("verify")
@click.option("--legacy", is_flag=True, help="Check legacy metered prices instead of meters.")
@output_option
@click.pass_context
def stripe_verify(ctx: click.Context, legacy: bool, output: str) -> None:
    """Compare the catalogue and linked customers with Stripe; exit 1 when out of sync."""
    settings = _settings(ctx)

    async def check(setup: StripeSetup) -> Verification:
        engine = create_engine(settings.async_database_url())
        try:
            await require_migrated(engine)
            links = LinkStore(engine)
            status = ForwardingStatusService(settings, OutboxStore(engine), links, SystemClock())
            unbillable = await status.unbillable()
            report = await setup.verify(await links.all(), legacy=legacy)
        finally:
            await engine.dispose()
        for waiting in unbillable:
            report.issues.append(
                f"customer {waiting.customer_id}: usage stored but not billable: {waiting.reason}"
            )
        return report

    report = _with_stripe_setup(settings, check)
    recommendations = list(dict.fromkeys(report.recommendations))
    if output == JSON:
        emit_json(
            {
                "in_sync": report.in_sync,
                "issues": report.issues,
                "recommendations": recommendations,
                "checked": report.checked,
            }
        )
    else:
        click.echo(f"in_sync: {'true' if report.in_sync else 'false'}")
        for issue in report.issues:
            click.echo(f"issue: {issue}")
        for recommendation in recommendations:
            click.echo(f"recommendation: {recommendation}")
    if not report.in_sync:
        ctx.exit(1)
