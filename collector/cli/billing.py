"""`usage-collector` commands that change what is billed: links, retirements and rebills.

Each runs the same services as the API, so a change made here and one made through the API
are one and the same (a relink carries device counts either way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import click

from collector.adapters.db.migrate import require_migrated
from collector.api.app import Services, build_services
from collector.cli.output import JSON, emit_json, output_option, table
from collector.settings import CollectorSettings


def run_with_services[T](
    settings: CollectorSettings, action: Callable[[Services], Awaitable[T]]
) -> T:
    """Build the services once, run ``action`` on a migrated database, close them.

    An unreachable or unmigrated database is refused before ``action`` starts; collector errors
    reach the top-level group, which prints them on one line.
    """

    async def run() -> T:
        services = build_services(settings.model_copy(update={"forwarder_enabled": False}))
        try:
            await require_migrated(services.engine)
            return await action(services)
        finally:
            await services.close()

    return asyncio.run(run())


def settings_of(ctx: click.Context) -> CollectorSettings:
    loader: Callable[..., CollectorSettings] = ctx.obj["load_settings"]
    return loader(ctx)


@click.group()
def instances() -> None:
    """Instances of a customer (one agent each, e.g. acme-prod and acme-staging)."""


@instances.command("retire")
@click.argument("customer_id")
@click.argument("instance_id")
@output_option
@click.pass_context
def instances_retire(ctx: click.Context, customer_id: str, instance_id: str, output: str) -> None:
    """Stop billing INSTANCE_ID's last device count; its messages and peaks stay billed."""

    async def retire(services: Services) -> Any:
        return await services.instances.retire(customer_id, instance_id, actor="cli")

    retired = run_with_services(settings_of(ctx), retire)
    if output == JSON:
        emit_json(retired)
        return
    click.echo(
        f"retired {instance_id} of {customer_id}: {', '.join(retired.metrics)} no longer "
        "billed for it (reports it sends later count again)"
    )


@click.group()
def forwarding() -> None:
    """What waits for Stripe, and usage Stripe refused as too old."""


@forwarding.command("ageing")
@output_option
@click.pass_context
def forwarding_ageing(ctx: click.Context, output: str) -> None:
    """List waiting usage near or past Stripe's 35-day limit."""

    async def ageing(services: Services) -> Any:
        return await services.forwarding.ageing()

    rows = run_with_services(settings_of(ctx), ageing)
    if output == JSON:
        emit_json(rows)
    elif not rows:
        click.echo("no waiting usage near Stripe's 35-day limit")
    else:
        click.echo(
            table(
                ("customer", "metric", "windows", "oldest window end", "expires"),
                (
                    (r.customer_id, r.metric, r.forwards, r.oldest_window_end, r.expires_at)
                    for r in rows
                ),
            )
        )


@forwarding.command("rebill")
@click.option("--batch", "batch_id", type=int, default=None, help="One dead batch by id.")
@click.option("--customer", "customer_id", default=None, help="Every aged batch of a customer.")
@output_option
@click.pass_context
def forwarding_rebill(
    ctx: click.Context, batch_id: int | None, customer_id: str | None, output: str
) -> None:
    """Bill usage Stripe refused as older than 35 days into the current period (audited)."""
    if (batch_id is None) == (customer_id is None):
        raise click.UsageError("give exactly one of --batch or --customer")

    async def rebill(services: Services) -> Any:
        return await services.forwarding.rebill(
            actor="cli", batch_id=batch_id, customer_id=customer_id
        )

    done = run_with_services(settings_of(ctx), rebill)
    if output == JSON:
        emit_json(done)
        return
    if not done:
        click.echo("nothing to rebill: no batch Stripe refused as too old")
    for record in done:
        click.echo(
            f"batch {record.batch_id} ({record.customer_id} {record.metric}, "
            f"{record.quantity}) will be billed in the current period"
        )
