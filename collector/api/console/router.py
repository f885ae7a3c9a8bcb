"""The console's routes under ``/console``, assembled from the app's services.

Its pages are public to the API's bearer middleware (a browser has no bearer header) and are
guarded by the session instead (``access``). They answer errors as pages, take the query
parameters they declare and ignore others (a browser page, unlike the API, where the app-wide
check refuses them), and send headers that keep the pages out of caches and frames and scripts
to the collector's own files. Its forms are urlencoded, so ``BodyShape``, which holds every API
body to JSON, skips them (``BodyShape.FORM_OPT_KEY``); instead a console body, the sign-in form
that anyone can post included, is held to ``FORM_MAX_BYTES``, well below the API's limit.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import Request, Router
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from collector.api.auth import PUBLIC
from collector.api.body_shape import BodyShape
from collector.api.console.access import NO_SESSION, session_guard
from collector.api.console.context import SECURITY_HEADERS, Console
from collector.api.console.customer_pages import CustomerPagesController
from collector.api.console.error_pages import error_page_handler
from collector.api.console.filters import FILTERS
from collector.api.console.forwarding_page import ForwardingPageController
from collector.api.console.overview import OverviewController
from collector.api.console.signin import SignInController
from collector.services.console_sessions import ConsoleSessions

if TYPE_CHECKING:
    from collector.api.app import Services

log = structlog.get_logger("collector.console")
FORM_MAX_BYTES = 16 * 1024
"""Largest console request body (bytes): a sign-in form is a few hundred, a retry form less."""
STATIC = Path(__file__).with_name("static")
HEADERS = [ResponseHeader(name=k, value=v) for k, v in SECURITY_HEADERS.items()]


def console_templates() -> TemplateConfig[JinjaTemplateEngine]:
    """The console's Jinja templates; autoescaped, and an unknown name is an error."""
    environment = Environment(
        loader=PackageLoader("collector.api.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(FILTERS)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def _session_secret(built: Services) -> bytes:
    settings = built.settings
    if settings.console_session_secret is not None:
        return settings.console_session_secret.get_secret_value().encode()
    if not settings.is_sqlite:
        log.warning(
            "COLLECTOR_CONSOLE_SESSION_SECRET is not set: a console sign-in holds only on the "
            "replica that took it, until it restarts; give every replica the same secret"
        )
    return secrets.token_bytes(32)


def console_of(built: Services) -> Console:
    settings = built.settings
    return Console(
        settings=settings,
        clock=built.clock,
        catalogue=settings.catalogue(),
        sessions=ConsoleSessions.on(
            built.engine,
            built.authenticator,
            built.clock,
            secret=_session_secret(built),
            lifetime=timedelta(seconds=settings.console_session_lifetime),
        ),
        customers=built.customers,
        forwarding=built.forwarding,
        reconciliation=built.reconciliation,
        reconciler=built.reconciler,
        usage=built.usage,
        rate_limits=built.rate_limits,
        leadership=built.leadership,
    )


async def _known_query_parameters_only(_: Request[Any, Any, Any]) -> None:
    """Replaces the app's strict query check, which reads the OpenAPI document the console is
    not part of; each page declares and validates its own parameters."""
    return None


def console_routes(built: Services) -> list[Router]:
    """``/console`` with its static files, or nothing with ``COLLECTOR_CONSOLE_ENABLED=false``."""
    if not built.settings.console_enabled:
        return []
    console = console_of(built)
    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        name="console-static",
        opt={NO_SESSION: True},
        cache_control=CacheControlHeader(max_age=3600, public=True),
        include_in_schema=False,
    )
    return [
        Router(
            "/console",
            route_handlers=[
                SignInController,
                OverviewController,
                CustomerPagesController,
                ForwardingPageController,
                static,
            ],
            dependencies={"console": Provide(lambda: console, sync_to_thread=False)},
            guards=[session_guard(console)],
            exception_handlers={Exception: error_page_handler(built.telemetry)},
            before_request=_known_query_parameters_only,
            response_headers=HEADERS,
            cache_control=CacheControlHeader(no_store=True),
            opt={PUBLIC: True, BodyShape.FORM_OPT_KEY: True},
            request_max_body_size=FORM_MAX_BYTES,
            include_in_schema=False,
        )
    ]
