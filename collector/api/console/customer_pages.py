"""``/console/customers`` (the customers view as a table) and ``/console/customers/{id}``.

A key limited to one customer lists only that customer, and another customer's page answers
403 as the API does.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from collector.api.auth import authorize_customer, current_principal
from collector.api.console.context import Console, page
from collector.api.console.customer_detail import CHART_REPORTS, customer_page
from collector.api.console.customer_table import (
    LINK_FILTERS,
    RECONCILE_FILTERS,
    SORT_KEYS,
    SORT_PATTERN,
    TableQuery,
    table,
)
from collector.services.customers import CustomerFilter

_ONE_OF = "^({})?$"


class CustomerPagesController(Controller):
    path = "/customers"

    @get("/", name="console:customers")
    async def customers(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        q: Annotated[str, QueryParameter(max_length=128)] = "",
        link: Annotated[str, QueryParameter(pattern=_ONE_OF.format("|".join(LINK_FILTERS)))] = "",
        reconcile: Annotated[
            str, QueryParameter(pattern=_ONE_OF.format("|".join(RECONCILE_FILTERS)))
        ] = "",
        silent: Annotated[bool, QueryParameter()] = False,
        unbillable: Annotated[bool, QueryParameter()] = False,
        sort: Annotated[str, QueryParameter(pattern=SORT_PATTERN)] = "customer",
        order: Annotated[str, QueryParameter(pattern="^(asc|desc)?$")] = "",
    ) -> Template:
        query = TableQuery(
            search=q.strip(),
            link=link or None,
            reconcile=reconcile or None,
            silent=silent,
            unbillable=unbillable,
            sort=sort,
            descending=order == "desc",
        )
        scope = current_principal(request).customer_id
        views = await console.customers.list(
            CustomerFilter(
                customer_ids=(scope,) if scope else (),
                silent_intervals=console.settings.console_silent_intervals,
            )
        )
        rows = table(views, query)
        return page(
            request,
            console,
            "customers.html",
            title="Customers",
            rows=rows,
            total=len(views),
            query=query,
            columns=list(SORT_KEYS),
            link_filters=LINK_FILTERS,
            reconcile_filters=RECONCILE_FILTERS,
        )

    @get("/{customer_id:str}", name="console:customer")
    async def customer(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        customer_id: Annotated[str, PathParameter(min_length=1, max_length=128)],
    ) -> Template:
        authorize_customer(request, customer_id)
        figures = await customer_page(console, customer_id)
        return page(
            request,
            console,
            "customer.html",
            title=customer_id,
            c=figures,
            chart_reports=CHART_REPORTS,
        )
