"""Who is calling: roles, credential kinds and the principal a request runs as."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from collector.errors import Forbidden


class Role(enum.StrEnum):
    """Operator roles; each includes everything the roles below it may do."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


class Kind(enum.StrEnum):
    INGEST = "ingest"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """The credential behind a request. ``unrestricted`` only while auth is disabled."""

    credential_id: str
    kind: Kind | None
    role: Role | None = None
    customer_id: str | None = None
    unrestricted: bool = False

    def describe(self) -> str:
        if self.unrestricted:
            return "anonymous (auth disabled)"
        if self.kind is Kind.INGEST:
            return f"ingest token {self.credential_id} of customer {self.customer_id}"
        scope = f" limited to customer {self.customer_id}" if self.customer_id else ""
        return f"{self.role} key {self.credential_id}{scope}"

    def check_customer(self, customer_id: str, *, field: str | None = "customer_id") -> None:
        """Raise ``Forbidden`` unless this principal may act for ``customer_id``."""
        if self.unrestricted or self.customer_id is None or self.customer_id == customer_id:
            return
        raise Forbidden(f"{self.describe()} may not access customer {customer_id!r}", field=field)


ANONYMOUS = Principal(credential_id="anonymous", kind=None, unrestricted=True)
