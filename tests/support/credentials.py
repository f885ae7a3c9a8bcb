"""Issue collector credentials straight into its database, as `usage-collector tokens` does."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from collector.adapters.db.credentials import CredentialStore
from collector.adapters.db.engine import create_engine
from collector.services.credentials import CredentialService, Issued
from collector.services.principals import Role
from collector.settings import CollectorSettings
from common.clock import SystemClock


def _in_thread(coroutine: Any) -> Any:
    """Run on a loop of its own, so both sync and async tests may call it."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def _issue(database_url: str, kind: str, **options: Any) -> Issued:
    engine = create_engine(CollectorSettings(database_url=database_url).async_database_url())
    try:
        service = CredentialService(CredentialStore(engine), SystemClock())
        if kind == "token":
            return await service.create_token(options["customer_id"], options.get("name"))
        return await service.create_key(
            Role(options["role"]), options.get("name"), options.get("customer_id")
        )
    finally:
        await engine.dispose()


def issue_token(database_url: str, customer_id: str, name: str | None = None) -> Issued:
    return _in_thread(_issue(database_url, "token", customer_id=customer_id, name=name))  # type: ignore[no-any-return]


def issue_key(
    database_url: str, role: str, customer_id: str | None = None, name: str | None = None
) -> Issued:
    return _in_thread(  # type: ignore[no-any-return]
        _issue(database_url, "key", role=role, customer_id=customer_id, name=name)
    )


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}
