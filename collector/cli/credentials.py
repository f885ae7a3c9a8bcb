"""`usage-collector tokens ...` and `keys ...`: credentials, each secret printed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import click
from pydantic import ValidationError

from collector.adapters.db.credentials import Credential, CredentialStore
from collector.adapters.db.engine import create_engine
from collector.errors import CollectorError
from collector.secrets import register_settings_secrets
from collector.services.credentials import CredentialService
from collector.services.principals import Kind, Role
from collector.settings import CollectorSettings, load_settings
from common.clock import SystemClock
from common.logs import configure_logging


def _settings(ctx: click.Context) -> CollectorSettings:
    secrets_dir: Path | None = (ctx.find_root().obj or {}).get("secrets_dir")
    try:
        settings = load_settings(secrets_dir)
    except ValidationError as exc:
        raise click.ClickException(f"invalid collector settings:\n{exc}") from exc
    register_settings_secrets(settings)
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


def _run[T](ctx: click.Context, action: Callable[[CredentialService], Awaitable[T]]) -> T:
    settings = _settings(ctx)

    async def run() -> T:
        engine = create_engine(settings.async_database_url())
        try:
            return await action(CredentialService(CredentialStore(engine), SystemClock()))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except CollectorError as exc:
        raise click.ClickException(exc.detail) from exc


def _line(credential: Credential) -> str:
    used = credential.last_used_at.isoformat() if credential.last_used_at else "never"
    revoked = f"revoked {credential.revoked_at.isoformat()}" if credential.revoked_at else "active"
    who = credential.role or "ingest"
    return "\t".join(
        [
            credential.id,
            who,
            credential.customer_id or "*",
            credential.name or "-",
            f"created {credential.created_at.isoformat()}",
            f"last used {used}",
            revoked,
        ]
    )


def _print_secret(kind: str, credential: Credential, secret: str) -> None:
    click.echo(f"{kind} {credential.id} created; it is shown only now and stored only hashed:")
    click.echo(secret)


@click.group()
def tokens() -> None:
    """Ingest tokens: one customer's agents report usage with one."""


@tokens.command("create")
@click.option("--customer", "customer_id", required=True, help="Customer the token reports for.")
@click.option("--name", default=None, help="A label, e.g. the cluster it is for.")
@click.pass_context
def tokens_create(ctx: click.Context, customer_id: str, name: str | None) -> None:
    """Create a token and print it once (set it as AGENT_COLLECTOR_TOKEN)."""
    issued = _run(ctx, lambda service: service.create_token(customer_id, name))
    _print_secret("token", issued.credential, issued.secret)


@tokens.command("list")
@click.option("--customer", "customer_id", default=None, help="Only this customer's tokens.")
@click.pass_context
def tokens_list(ctx: click.Context, customer_id: str | None) -> None:
    """Print every token (never the secret): id, customer, name, created, last used, state."""
    for credential in _run(ctx, lambda service: service.list(Kind.INGEST, customer_id)):
        click.echo(_line(credential))


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
@click.pass_context
def keys_create(ctx: click.Context, role: str, name: str | None, customer_id: str | None) -> None:
    """Create an operator key and print it once."""
    issued = _run(ctx, lambda service: service.create_key(Role(role), name, customer_id))
    _print_secret("key", issued.credential, issued.secret)


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """Print every key (never the secret): id, role, customer, name, created, last used, state."""
    for credential in _run(ctx, lambda service: service.list(Kind.OPERATOR)):
        click.echo(_line(credential))


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke KEY_ID (key_...); collectors refuse it within COLLECTOR_AUTH_CACHE_TTL."""
    credential = _run(ctx, lambda service: service.revoke(Kind.OPERATOR, key_id))
    click.echo(f"revoked {credential.id}")
