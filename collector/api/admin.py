"""Admin endpoints: ingest tokens and operator keys. Secrets are returned once, at creation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from pydantic import BaseModel, Field

from collector.adapters.db.credentials import Credential
from collector.api.auth import admin
from collector.services.auth import Authenticator
from collector.services.credentials import CredentialService, Issued
from collector.services.principals import Kind, Role

NO_STORE = {"Cache-Control": "no-store"}
CredentialId = Annotated[str, Parameter(min_length=1, max_length=32, description="Credential id.")]


class CredentialOut(BaseModel):
    id: str
    kind: str
    role: str | None
    customer_id: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None

    @classmethod
    def of(cls, credential: Credential) -> CredentialOut:
        return cls(**vars(credential))


class IssuedOut(CredentialOut):
    secret: str = Field(description="The bearer secret; shown only now, stored only hashed.")

    @classmethod
    def issued(cls, issued: Issued) -> IssuedOut:
        return cls(**vars(issued.credential), secret=issued.secret)


class TokenIn(BaseModel):
    customer_id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=200)


class KeyIn(BaseModel):
    role: Role
    name: str | None = Field(default=None, max_length=200)
    customer_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Limit the key to one customer."
    )


class AdminController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    guards = [admin]

    @get("/tokens", summary="Ingest tokens (never their secrets)")
    async def tokens(
        self,
        credentials: NamedDependency[CredentialService],
        customer_id: Annotated[str | None, Parameter(min_length=1, max_length=128)] = None,
    ) -> list[CredentialOut]:
        return [CredentialOut.of(c) for c in await credentials.list(Kind.INGEST, customer_id)]

    @post("/tokens", status_code=201, summary="Create an ingest token for one customer")
    async def create_token(
        self, data: JSONBody[TokenIn], credentials: NamedDependency[CredentialService]
    ) -> Response[IssuedOut]:
        issued = await credentials.create_token(data.customer_id, data.name)
        return Response(IssuedOut.issued(issued), status_code=201, headers=NO_STORE)

    @delete("/tokens/{credential_id:str}", status_code=200, summary="Revoke an ingest token")
    async def revoke_token(
        self,
        credential_id: CredentialId,
        credentials: NamedDependency[CredentialService],
        authenticator: NamedDependency[Authenticator],
    ) -> CredentialOut:
        revoked = await credentials.revoke(Kind.INGEST, credential_id)
        authenticator.forget()
        return CredentialOut.of(revoked)

    @get("/keys", summary="Operator API keys (never their secrets)")
    async def keys(self, credentials: NamedDependency[CredentialService]) -> list[CredentialOut]:
        return [CredentialOut.of(c) for c in await credentials.list(Kind.OPERATOR)]

    @post("/keys", status_code=201, summary="Create an operator API key")
    async def create_key(
        self, data: JSONBody[KeyIn], credentials: NamedDependency[CredentialService]
    ) -> Response[IssuedOut]:
        issued = await credentials.create_key(data.role, data.name, data.customer_id)
        return Response(IssuedOut.issued(issued), status_code=201, headers=NO_STORE)

    @delete("/keys/{credential_id:str}", status_code=200, summary="Revoke an operator API key")
    async def revoke_key(
        self,
        credential_id: CredentialId,
        credentials: NamedDependency[CredentialService],
        authenticator: NamedDependency[Authenticator],
    ) -> CredentialOut:
        revoked = await credentials.revoke(Kind.OPERATOR, credential_id)
        authenticator.forget()
        return CredentialOut.of(revoked)
