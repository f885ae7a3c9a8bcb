"""Issuing, listing and revoking credentials. A secret is shown once and stored only hashed."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from collector.adapters.db.credentials import Credential, CredentialStore
from collector.errors import NotFound, ValidationFailed
from collector.services.principals import Kind, Role
from common.clock import Clock
from common.schema import Identifier

# The prefixes let secret scanners and the log redaction recognise a leaked credential.
TOKEN_PREFIX = "umt_"  # noqa: S105 (a prefix, not a secret)
KEY_PREFIX = "umk_"
MAX_NAME_LENGTH = 200
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret: it holds 256 random bits, so a slow password hash adds nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """A new credential and its secret, which exists only in this object and the caller's hand."""

    credential: Credential
    secret: str


def _customer(customer_id: str) -> str:
    try:
        return _IDENTIFIER.validate_python(customer_id)
    except ValidationError as exc:
        message = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(f"customer_id {message}", field="customer_id") from exc


def _name(name: str | None) -> str | None:
    if name is not None and (
        len(name) > MAX_NAME_LENGTH or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    ):
        raise ValidationFailed(
            f"name must be at most {MAX_NAME_LENGTH} printable characters", field="name"
        )
    return name or None


class CredentialService:
    """Creates, lists and revokes ingest tokens and operator keys."""

    def __init__(self, store: CredentialStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create_token(self, customer_id: str, name: str | None = None) -> Issued:
        """A new ingest token that may only report usage for ``customer_id``."""
        return await self._issue(Kind.INGEST, None, _customer(customer_id), _name(name))

    async def create_key(
        self, role: Role, name: str | None = None, customer_id: str | None = None
    ) -> Issued:
        """A new operator key; with ``customer_id`` it sees only that customer."""
        if customer_id is not None and role is Role.ADMIN:
            raise ValidationFailed(
                "admin keys manage every customer and cannot be limited to one",
                field="customer_id",
            )
        customer = _customer(customer_id) if customer_id is not None else None
        return await self._issue(Kind.OPERATOR, role, customer, _name(name))

    async def _issue(
        self, kind: Kind, role: Role | None, customer_id: str | None, name: str | None
    ) -> Issued:
        prefix, id_prefix = (TOKEN_PREFIX, "tok_") if kind is Kind.INGEST else (KEY_PREFIX, "key_")
        secret = prefix + secrets.token_urlsafe(32)
        credential = Credential(
            id=id_prefix + secrets.token_hex(6),
            kind=kind.value,
            role=role.value if role else None,
            customer_id=customer_id,
            name=name,
            created_at=self._clock.now(),
            last_used_at=None,
            revoked_at=None,
        )
        await self._store.add(credential, hash_secret(secret))
        return Issued(credential, secret)

    async def list(self, kind: Kind, customer_id: str | None = None) -> list[Credential]:
        return await self._store.list(kind.value, customer_id)

    async def revoke(self, kind: Kind, credential_id: str) -> Credential:
        """Revoke a credential; it is refused from then on (see ``Authenticator.forget``)."""
        revoked = await self._store.revoke(credential_id, kind.value, self._clock.now())
        if revoked is None:
            label = "token" if kind is Kind.INGEST else "key"
            raise NotFound(f"no {label} {credential_id!r}", field="id")
        return revoked
