"""The OpenAPI document and its pages: bodies the handlers decode themselves, offline UIs.

The report body's schema is built from the pydantic JSON schema. Swagger UI (`/schema/swagger`)
and Redoc (`/schema/redoc`, also `/schema`) load their scripts and styles from the collector
itself, `/schema/assets/...` (``openapi_assets/``), never from a CDN, so the API docs work on a
cluster without internet access. Like every `/schema` path they need no credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.static_files import create_static_files_router
from pydantic import TypeAdapter

from collector.api.auth import PUBLIC
from common import __version__
from common.schema import LegacyUsageReport, UsageReport

REF_TEMPLATE = "#/components/schemas/{model}"
REPORT_BODY = "UsageReportBody"
_RENAMED = {"not": "schema_not", "if": "schema_if", "else": "schema_else"}
_SCHEMA_FIELDS = {f.name for f in fields(Schema)}

SCHEMA_PATH = "/schema"
ASSETS = Path(__file__).with_name("openapi_assets")
ASSETS_URL = f"{SCHEMA_PATH}/assets"
SWAGGER_UI = f"{ASSETS_URL}/swagger-ui-5.35.0"
REDOC = f"{ASSETS_URL}/redoc-2.5.2"
FAVICON = f"<link rel='icon' type='image/png' href='{SWAGGER_UI}/favicon-32x32.png'>"
# a directory per version: an asset's URL never changes its content
ASSET_CACHE = CacheControlHeader(public=True, max_age=7 * 24 * 3600)


def _snake(key: str) -> str:
    return _RENAMED.get(key) or re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def to_schema(node: Any) -> Any:
    """Convert a JSON-schema dict into Litestar's OpenAPI ``Schema`` objects."""
    if isinstance(node, list):
        return [to_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    kwargs: dict[str, Any] = {}
    for key, value in node.items():
        name = _snake(key)
        if name not in _SCHEMA_FIELDS:
            continue
        if name == "type":
            kwargs[name] = (
                [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif name == "properties":
            kwargs[name] = {prop: to_schema(sub) for prop, sub in value.items()}
        elif name in {"default", "examples", "example", "enum", "const", "required"}:
            kwargs[name] = value
        else:
            kwargs[name] = to_schema(value)
    return Schema(**kwargs)


def _report_body_schemas() -> dict[str, Schema]:
    adapter: TypeAdapter[UsageReport | LegacyUsageReport] = TypeAdapter(
        UsageReport | LegacyUsageReport
    )
    raw = adapter.json_schema(ref_template=REF_TEMPLATE)
    definitions = raw.pop("$defs", {})
    schemas = {name: to_schema(sub) for name, sub in definitions.items()}
    body = to_schema(raw)
    body.description = (
        "A schema-version-1 report, or the seed exporter's legacy body (no id, no window)."
    )
    schemas[REPORT_BODY] = body
    return schemas


def render_plugins() -> list[Any]:
    """Redoc (the default page), Swagger UI and the JSON and YAML documents, all same-origin."""
    return [
        RedocRenderPlugin(
            path="/redoc",
            js_url=f"{REDOC}/redoc.standalone.js",
            google_fonts=False,
            favicon=FAVICON,
        ),
        SwaggerRenderPlugin(
            path="/swagger",
            js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER_UI}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
            favicon=FAVICON,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def openapi_config() -> OpenAPIConfig:
    assets = create_static_files_router(
        path=ASSETS_URL.removeprefix(SCHEMA_PATH),
        directories=[ASSETS],
        name="openapi_assets",
        cache_control=ASSET_CACHE,
        include_in_schema=False,
        opt={PUBLIC: True},
    )
    return OpenAPIConfig(
        title="Usage collector",
        version=__version__,
        description="Stores usage reports from customer agents and forwards usage to Stripe.",
        render_plugins=render_plugins(),
        openapi_router=Router(SCHEMA_PATH, route_handlers=[assets], include_in_schema=False),
    )


def add_body_schemas(components: Components) -> None:
    """Register the report body schemas, which Litestar cannot infer from a raw-body handler."""
    components.schemas = {**(components.schemas or {}), **_report_body_schemas()}
    for schema in components.schemas.values():
        if isinstance(schema, Schema):
            _one_number_type(schema)


def _one_number_type(schema: Schema) -> None:
    """``oneOf: [number, integer]`` (from ``float | int``) as ``number``: an integer matched
    both branches, so a strict client refused every response holding one."""
    for name, value in (schema.properties or {}).items():
        if isinstance(value, Schema):
            _one_number_type(value)
            assert schema.properties is not None
            schema.properties[name] = _collapsed(value)
    extra = schema.additional_properties
    if isinstance(extra, Schema):
        schema.additional_properties = _collapsed(extra)
    if isinstance(schema.items, Schema):
        schema.items = _collapsed(schema.items)


def _collapsed(schema: Schema) -> Schema:
    branches = schema.one_of or []
    kinds = {b.type for b in branches if isinstance(b, Schema)}
    if len(branches) == 2 and kinds == {OpenAPIType.NUMBER, OpenAPIType.INTEGER}:
        return Schema(type=OpenAPIType.NUMBER, description=schema.description)
    return schema


@dataclass
class ReportOperation(Operation):
    """Documents the report body, which the handler reads raw to control size and errors."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Reference(ref=REF_TEMPLATE.format(model=REPORT_BODY))
                )
            },
        )
