"""The ceiling: a Litestar endpoint that accepts a JSON body and does nothing with it."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, post


@post("/api/usage/report", status_code=201)
async def accept(request: Request[Any, Any, Any]) -> dict[str, str]:
    await request.body()
    return {"message": "ok"}


app = Litestar(route_handlers=[accept], logging_config=None, openapi_config=None)
