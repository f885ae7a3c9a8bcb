"""`usage-collector tokens ...` and `keys ...`: credentials, each secret printed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import click

from collector.adapters.db.credentials import Credential, CredentialStore
from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import require_migrated
from collector.cli.billing import settings_of
from collector.cli.output import JSON, emit_json, output_option, plain, table
from collector.services.credentials import CredentialService, Issued
from collector.services.principals import Kind, Role
from common.clock import SystemClock


def _run[T](ctx: click.Context, action: Callable[[CredentialService], Awaitable[T]]) -> T:
    """Run ``action`` on a migrated database; an unmigrated one is refused before it starts."""
    settings = settings_of(ctx)

    async def run() -> T:
        engine = create_engine(settings.async_database_url())
        try:
            await require_migrated(engine)
            return await action(CredentialService(CredentialStore(engine), SystemClock()))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _state(credential: Credential) -> str:
    if credential.revoked_at is None:
        return "active"
    return f"revoked {credential.revoked_at.isoformat(timespec='seconds')}"


def _record(credential: Credential) -> dict[str, Any]:
    return {**plain(credential), "state": "revoked" if credential.revoked else "active"}


def _print_list(credentials: list[Credential], output: str) -> None:
    if output == JSON:
        emit_json([_record(c) for c in credentials])
        return
    if not credentials:
        click.echo("none")
        return
    click.echo(
        table(
            ("id", "role", "customer", "name", "created", "last used", "state"),
            (
                (
                    c.id,
                    c.role or "ingest",
                    c.customer_id or "*",
                    c.name,
                    c.created_at,
                    c.last_used_at or "never",
                    _state(c),
                )
                for c in credentials
            ),
        )
    )


def _print_secret(kind: str, issued: Issued, output: str) -> None:
    """The secret on stdout's last line (scripts take that line); JSON carries it as ``secret``."""
    if output == JSON:
        emit_json({**_record(issued.credential), "secret": issued.secret})
        return
    click.echo(
        f"{kind} {issued.credential.id} created; it is shown only now and stored only hashed:"
    )
    click.echo(issued.secret)


@click.group()
def tokens() -> None:
    """Ingest tokens: one customer's agents report usage with one."""


@tokens.command("create")
@click.option("--customer", "customer_id", required=True, help="Customer the token reports for.")
@click.option("--name", default=None, help="A label, e.g. the cluster it is for.")
@output_option
@click.pass_context
def tokens_create(ctx: click.Context, customer_id: str, name: str | None, output: str) -> None:
    """Create a token and print it once (set it as AGENT_COLLECTOR_TOKEN)."""
    issued = _run(ctx, lambda service: service.create_token(customer_id, name))
    _print_secret("token", issued, output)


@tokens.command("list")
@click.option("--customer", "customer_id", default=None, help="Only this customer's tokens.")
@output_option
@click.pass_context
def tokens_list(ctx: click.Context, customer_id: str | None, output: str) -> None:
    """Print every token (never the secret): id, customer, name, created, last used, state."""
    _print_list(_run(ctx, lambda service: service.list(Kind.INGEST, customer_id)), output)


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke TOKEN_ID (tok_...); collectors refuse it within COLLECTOR_AUTH_CACHE_TTL."""
    credential = _run(ctx, lambda service: service.revoke(Kind.INGEST, token_id))
    click.echo(f"revoked {credential.id}")


@click.group()
def keys() -> None:
    """Operator API keys with a role: viewer < editor < admin."""


@keys.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default=None, help="A label, e.g. the person or tool using it.")
@click.option("--customer", "customer_id", default=None, help="Limit the key to one customer.")
@output_option
@click.pass_context
def keys_create(
    ctx: click.Context, role: str, name: str | None, customer_id: str | None, output: str
) -> None:
    """Create an operator key and print it once."""
    issued = _run(ctx, lambda service: service.create_key(Role(role), name, customer_id))
    _print_secret("key", issued, output)


@keys.command("list")
@output_option
@click.pass_context
def keys_list(ctx: click.Context, output: str) -> None:
    """Print every key (never the secret): id, role, customer, name, created, last used, state."""
    _print_list(_run(ctx, lambda service: service.list(Kind.OPERATOR)), output)


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke KEY_ID (key_...); collectors refuse it within COLLECTOR_AUTH_CACHE_TTL."""
    credential = _run(ctx, lambda service: service.revoke(Kind.OPERATOR, key_id))
    click.echo(f"revoked {credential.id}")
