"""`usage-collector customers`: the customers view and linking, through the API's services."""

from __future__ import annotations

import json
from typing import Any

import click

from collector.api.app import Services
from collector.api.customers import CustomerOut, LinkOut
from collector.cli.billing import run_with_services, settings_of
from collector.cli.output import output_option
from collector.services.customers import DEFAULT_SILENT_INTERVALS, CustomerFilter


@click.group()
def customers() -> None:
    """Customers: who reports, who is linked to Stripe, and what waits unbilled."""


@customers.command("link")
@click.argument("customer_id")
@click.argument("stripe_customer_id")
@click.option(
    "--force",
    is_flag=True,
    help="Relink a customer linked to another Stripe customer, or share a Stripe customer "
    "that already backs another collector customer.",
)
@output_option
@click.pass_context
def customers_link(
    ctx: click.Context, customer_id: str, stripe_customer_id: str, force: bool, output: str
) -> None:
    """Bill CUSTOMER_ID's usage to Stripe customer STRIPE_CUSTOMER_ID (cus_...).

    Stripe is asked first whether the customer exists; nothing is linked when it does not.
    """
    if not stripe_customer_id.startswith("cus_"):
        raise click.BadParameter(
            "a Stripe customer id starts with cus_", param_hint="STRIPE_CUSTOMER_ID"
        )
    settings = settings_of(ctx)

    async def link(services: Services) -> LinkOut:
        result = await services.linking.link(
            customer_id, stripe_customer_id, replace=force, share=force, actor="cli"
        )
        return LinkOut.of(result)

    result = run_with_services(settings, link)
    if output == "json":
        click.echo(result.model_dump_json())
        return
    if result.replaced:
        click.echo(f"relinked {customer_id}: {result.replaced} -> {stripe_customer_id}")
    else:
        click.echo(f"linked {customer_id} -> {stripe_customer_id}")
    if not result.stripe_checked:
        click.echo("Stripe customer not checked: no COLLECTOR_STRIPE_API_KEY")
    click.echo(f"subscription: {result.subscription}: {result.detail}")
    if result.period is not None:
        click.echo(
            f"billing period: {result.period.start.isoformat()} .. {result.period.end.isoformat()}"
        )


@customers.command("list")
@click.option("--unlinked", is_flag=True, help="Only customers with usage and no link.")
@click.option("--silent", is_flag=True, help="Only customers with a silent instance.")
@click.option("--out-of-sync", is_flag=True, help="Only customers whose last reconcile drifted.")
@click.option("--unbillable", is_flag=True, help="Only customers whose usage cannot be billed.")
@click.option(
    "--silent-intervals",
    type=click.IntRange(min=1),
    default=DEFAULT_SILENT_INTERVALS,
    show_default=True,
    help="An instance is silent after this many of its own intervals without a report.",
)
@output_option
@click.pass_context
def customers_list(
    ctx: click.Context,
    unlinked: bool,
    silent: bool,
    out_of_sync: bool,
    unbillable: bool,
    silent_intervals: int,
    output: str,
) -> None:
    """Every customer that reported or was linked, with what waits unbilled."""
    settings = settings_of(ctx)
    which = CustomerFilter(
        unlinked=unlinked,
        silent=silent,
        out_of_sync=out_of_sync,
        unbillable=unbillable,
        silent_intervals=silent_intervals,
    )

    async def rows(services: Services) -> list[CustomerOut]:
        return [CustomerOut.of(v) for v in await services.customers.list(which)]

    found = run_with_services(settings, rows)
    if output == "json":
        click.echo(json.dumps([c.model_dump(mode="json") for c in found]))
        return
    if not found:
        click.echo("no customers match")
        return
    click.echo(table(found))
    for customer in found:
        if customer.unbillable:
            click.echo(f"{customer.customer_id}: not billable: {customer.unbillable}")


def table(found: list[CustomerOut]) -> str:
    """One aligned line per customer."""
    header = (
        "CUSTOMER",
        "STRIPE CUSTOMER",
        "SUBSCRIPTION",
        "INSTANCES",
        "PENDING",
        "DEAD",
        "OLDEST UNBILLED",
        "RECONCILE",
    )
    lines: list[tuple[Any, ...]] = [header]
    for c in found:
        silent = sum(1 for i in c.instances if i.silent)
        lines.append(
            (
                c.customer_id,
                c.stripe_customer_id or "-",
                c.subscription_id or "-",
                f"{len(c.instances)}" + (f" ({silent} silent)" if silent else ""),
                c.pending,
                c.dead,
                age(c.oldest_unbilled_seconds),
                c.reconcile,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 72 else f"{hours // 24}d"
