"""``/console/forwarding``: batches by state, each dead letter with Stripe's message, and retry.

Retrying goes through the service behind ``POST /api/forwarding/batches/{id}/retry``: the batch
is sent again with its identifier and members unchanged. As in the API, that takes an editor key
that is not limited to one customer; viewers and scoped keys get no button, and a post of theirs
is refused (403).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from collector.api.auth import current_principal
from collector.api.console.access import CONSOLE_ROLE, checked_form
from collector.api.console.context import Console, live_refresh, may_act, page
from collector.errors import Forbidden
from collector.services.principals import Role

log = structlog.get_logger("collector.console")
BATCH_STATES = ("dead", "pending", "sent", "rejected", "rebilled", "dissolved")
LISTED = 100
SCOPED_COUNTED = 1000


class ForwardingPageController(Controller):
    path = "/forwarding"

    @get("/", name="console:forwarding")
    async def forwarding(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        batch_state: Annotated[
            str, QueryParameter(name="state", pattern="^(" + "|".join(BATCH_STATES) + ")$")
        ] = "dead",
        retried: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
    ) -> Template:
        scope = current_principal(request).customer_id
        leader = None
        if scope is None:
            counts = (await console.forwarding.status()).batches
            leader = console.leadership.status()
        else:
            counts = dict(
                Counter(
                    b.state for b in await console.forwarding.batches(None, scope, SCOPED_COUNTED)
                )
            )
        batches = await console.forwarding.batches(batch_state, scope, LISTED)
        template = "_forwarding_live.html" if live_refresh(request) else "forwarding.html"
        return page(
            request,
            console,
            template,
            title="Forwarding",
            state=batch_state,
            states=BATCH_STATES,
            counts={s: counts.get(s, 0) for s in BATCH_STATES},
            batches=batches,
            listed=LISTED,
            retried=retried,
            scoped_to=scope,
            leader=leader,
        )

    @post(
        "/batches/{batch_id:int}/retry",
        name="console:retry",
        status_code=303,
        opt={CONSOLE_ROLE: Role.EDITOR.value},
    )
    async def retry(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        batch_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)],
    ) -> Redirect:
        principal = current_principal(request)
        if not may_act(principal):
            raise Forbidden(
                f"{principal.describe()} may not retry: retrying spans every customer, so it "
                "takes an editor key that is not limited to one",
                field="session",
            )
        await checked_form(request, console)
        batch = await console.forwarding.retry(batch_id)
        log.info(
            "dead letter retried from the console",
            batch=batch.id,
            customer_id=batch.customer_id,
            metric=batch.metric,
            by=principal.describe(),
        )
        return Redirect(f"/console/forwarding?state=dead&retried={batch.id}", status_code=303)
