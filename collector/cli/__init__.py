"""`usage-collector`: serve the API and manage the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import structlog
import uvicorn
from pydantic import ValidationError

from collector.adapters.db.engine import create_engine, redacted
from collector.adapters.db.links import Link, LinkStore
from collector.adapters.db.migrate import current_revision, head_revision, upgrade
from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import Services, create_app
from collector.api.header_deadline import http_protocol
from collector.cli.billing import forwarding, instances, run_with_services
from collector.cli.credentials import keys, tokens
from collector.errors import CollectorError, StripeNotConfigured
from collector.secrets import register_settings_secrets
from collector.services.forwarding_setup import stripe_connection
from collector.services.stripe_setup import SetupResult, StripeSetup, Verification
from collector.services.subscriptions import link_customer
from collector.settings import CollectorSettings, load_settings
from common import __version__
from common.logs import configure_logging

log = structlog.get_logger("collector")


def _settings(ctx: click.Context, **overrides: Any) -> CollectorSettings:
    try:
        settings = load_settings(ctx.obj.get("secrets_dir"), **overrides)
    except ValidationError as exc:
        raise click.ClickException(f"invalid collector settings:\n{exc}") from exc
    register_settings_secrets(settings)
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


@click.group()
@click.version_option(__version__, prog_name="usage-collector")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="COLLECTOR_SECRETS_DIR",
    help="Directory of secret files named like the settings (e.g. collector_stripe_api_key).",
)
@click.pass_context
def main(ctx: click.Context, secrets_dir: Path | None) -> None:
    """Usage collector: stores usage reports and forwards them to Stripe."""
    ctx.ensure_object(dict)
    ctx.obj["secrets_dir"] = secrets_dir
    ctx.obj["load_settings"] = _settings


main.add_command(tokens)
main.add_command(keys)
main.add_command(instances)
main.add_command(forwarding)


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
    settings = _settings(ctx, **overrides)
    url = settings.async_database_url()
    if migrate:
        upgrade(url)
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
    upgrade(url, revision)
    click.echo(f"database {redacted(url)} is at revision {revision}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the database's revision and the newest one this version knows."""
    settings = _settings(ctx)
    current = asyncio.run(current_revision(settings.async_database_url()))
    click.echo(f"current: {current or 'none'}\nhead:    {head_revision()}")


@main.group()
def customers() -> None:
    """Links between collector customers and Stripe customers."""


@customers.command("link")
@click.argument("customer_id")
@click.argument("stripe_customer_id")
@click.pass_context
def customers_link(ctx: click.Context, customer_id: str, stripe_customer_id: str) -> None:
    """Bill CUSTOMER_ID's usage to Stripe customer STRIPE_CUSTOMER_ID (cus_...)."""
    if not stripe_customer_id.startswith("cus_"):
        raise click.BadParameter(
            "a Stripe customer id starts with cus_", param_hint="STRIPE_CUSTOMER_ID"
        )
    settings = _settings(ctx)

    async def link(services: Services) -> str | None:
        """Read the subscription first, so link, items and billing period land together."""
        subscription = await link_customer(
            services.links,
            services.clock,
            customer_id,
            stripe_customer_id,
            services.forwarding.subscription_reader,
            actor="cli",
        )
        return str(subscription["id"]) if subscription else None

    subscription_id = run_with_services(settings, link)
    click.echo(f"linked {customer_id} -> {stripe_customer_id}")
    if subscription_id:
        click.echo(f"subscription {subscription_id}: items and billing periods stored")
    elif settings.stripe_api_key is not None:
        click.echo(
            "no live subscription, or Stripe could not be read: usage waits until the "
            "subscription is known (the forwarder reads it again), and bills in UTC calendar "
            "months only if the customer has no subscription at all"
        )
    else:
        click.echo("no COLLECTOR_STRIPE_API_KEY: the billing period is read once one is set")


@customers.command("list")
@click.pass_context
def customers_list(ctx: click.Context) -> None:
    """Print every linked customer."""
    settings = _settings(ctx)

    async def rows() -> list[Link]:
        engine = create_engine(settings.async_database_url())
        try:
            return await LinkStore(engine).all()
        finally:
            await engine.dispose()

    for link in asyncio.run(rows()):
        click.echo(f"{link.customer_id}\t{link.stripe_customer_id}\t{link.subscription_id or '-'}")


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
    from collector.stripe_sandbox import serve as serve_sandbox

    configure_logging("info", json=False)
    click.echo(f"Stripe sandbox on http://{host}:{port} (point COLLECTOR_STRIPE_API_BASE at it)")
    serve_sandbox(host, port, webhook_url=webhook_url, webhook_secret=webhook_secret, seed=seed)


def _with_stripe_setup[T](
    settings: CollectorSettings, use: Callable[[StripeSetup], Awaitable[T]]
) -> T:
    """Run ``use`` against Stripe, closing the connection after; errors become CLI errors."""
    try:
        connection = stripe_connection(settings)
    except StripeNotConfigured as exc:
        raise click.ClickException(exc.detail) from exc

    async def run() -> T:
        try:
            return await use(StripeSetup(StripeCatalog(connection.client), settings.catalogue()))
        finally:
            await connection.aclose()

    try:
        return asyncio.run(run())
    except CollectorError as exc:
        raise click.ClickException(exc.detail) from exc


@stripe.command("setup")
@click.option("--legacy", is_flag=True, help="Legacy metered prices (usage records), no meters.")
@click.pass_context
def stripe_setup(ctx: click.Context, legacy: bool) -> None:
    """Create the product, meters and prices the catalogue needs; reuses what exists."""
    settings = _settings(ctx)
    result: SetupResult = _with_stripe_setup(settings, lambda setup: setup.apply(legacy=legacy))
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
@click.pass_context
def stripe_verify(ctx: click.Context, legacy: bool) -> None:
    """Compare the catalogue and linked customers with Stripe; exit 1 when out of sync."""
    settings = _settings(ctx)

    async def check(setup: StripeSetup) -> Verification:
        engine = create_engine(settings.async_database_url())
        try:
            links = await LinkStore(engine).all()
        finally:
            await engine.dispose()
        return await setup.verify(links, legacy=legacy)

    report = _with_stripe_setup(settings, check)
    click.echo(f"in_sync: {'true' if report.in_sync else 'false'}")
    for issue in report.issues:
        click.echo(f"issue: {issue}")
    for recommendation in dict.fromkeys(report.recommendations):
        click.echo(f"recommendation: {recommendation}")
    if not report.in_sync:
        ctx.exit(1)
