"""`usage-collector` commands that change what is billed: links, retirements and rebills.

Each runs the same services as the API, so a change made here and one made through the API
are one and the same (a relink carries device counts either way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import click

from collector.api.app import Services, build_services
from collector.errors import CollectorError
from collector.settings import CollectorSettings


def run_with_services[T](
    settings: CollectorSettings, action: Callable[[Services], Awaitable[T]]
) -> T:
    """Build the services once, run ``action``, close them; collector errors become messages."""

    async def run() -> T:
        services = build_services(settings.model_copy(update={"forwarder_enabled": False}))
        try:
            return await action(services)
        finally:
            await services.close()

    try:
        return asyncio.run(run())
    except CollectorError as exc:
        raise click.ClickException(exc.detail) from exc


def settings_of(ctx: click.Context) -> CollectorSettings:
    loader: Callable[..., CollectorSettings] = ctx.obj["load_settings"]
    return loader(ctx)


@click.group()
def instances() -> None:
    """Instances of a customer (one agent each, e.g. acme-prod and acme-staging)."""


@instances.command("retire")
@click.argument("customer_id")
@click.argument("instance_id")
@click.pass_context
def instances_retire(ctx: click.Context, customer_id: str, instance_id: str) -> None:
    """Stop billing INSTANCE_ID's last device count; its messages and peaks stay billed."""

    async def retire(services: Services) -> Any:
        return await services.instances.retire(customer_id, instance_id, actor="cli")

    retired = run_with_services(settings_of(ctx), retire)
    click.echo(
        f"retired {instance_id} of {customer_id}: {', '.join(retired.metrics)} no longer "
        "billed for it (reports it sends later count again)"
    )


@click.group()
def forwarding() -> None:
    """What waits for Stripe, and usage Stripe refused as too old."""


@forwarding.command("ageing")
@click.pass_context
def forwarding_ageing(ctx: click.Context) -> None:
    """List waiting usage near or past Stripe's 35-day limit."""

    async def ageing(services: Services) -> Any:
        return await services.forwarding.ageing()

    rows = run_with_services(settings_of(ctx), ageing)
    if not rows:
        click.echo("no waiting usage near Stripe's 35-day limit")
    for row in rows:
        click.echo(
            f"{row.customer_id}\t{row.metric}\t{row.forwards} windows\toldest "
            f"{row.oldest_window_end.isoformat()}\texpires {row.expires_at.isoformat()}"
        )


@forwarding.command("rebill")
@click.option("--batch", "batch_id", type=int, default=None, help="One dead batch by id.")
@click.option("--customer", "customer_id", default=None, help="Every aged batch of a customer.")
@click.pass_context
def forwarding_rebill(ctx: click.Context, batch_id: int | None, customer_id: str | None) -> None:
    """Bill usage Stripe refused as older than 35 days into the current period (audited)."""
    if (batch_id is None) == (customer_id is None):
        raise click.UsageError("give exactly one of --batch or --customer")

    async def rebill(services: Services) -> Any:
        return await services.forwarding.rebill(
            actor="cli", batch_id=batch_id, customer_id=customer_id
        )

    done = run_with_services(settings_of(ctx), rebill)
    if not done:
        click.echo("nothing to rebill: no batch Stripe refused as too old")
    for record in done:
        click.echo(
            f"batch {record.batch_id} ({record.customer_id} {record.metric}, "
            f"{record.quantity}) will be billed in the current period"
        )
