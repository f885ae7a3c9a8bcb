"""Ingest tokens, operator roles and customer scopes over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import select

from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import CredentialRow, ForwardRow, ReportRow
from collector.api.auth import PUBLIC, declared_access
from collector.cli import main
from tests.integration.collector.test_ingest import make_report
from tests.support.collector import RunningCollector, count_rows, run_collector
from tests.support.credentials import bearer

ROLES = ("viewer", "editor", "admin")
RANK = {"ingest": 0, "viewer": 1, "editor": 2, "admin": 3}
UNLIMITED = {"rate_limit_rps": 10_000.0, "rate_limit_burst": 10_000}


@pytest.fixture
def roomy(database_url: str) -> Iterator[RunningCollector]:
    """A collector whose rate limit never gets in the way of a table of requests."""
    with run_collector(database_url, **UNLIMITED) as running:
        yield running


def report(collector: RunningCollector, body: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{collector.url}/api/usage/report",
        content=body,
        headers={"content-type": "application/json", **headers},
    )


def stored(collector: RunningCollector) -> tuple[int, int]:
    return count_rows(collector.database_url, ReportRow), count_rows(
        collector.database_url, ForwardRow
    )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail", "field"}
    assert response.json()["error"] == code


# --- ingest tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer umt_not-a-token-anyone-issued-0000000000000",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer two words",
        "Bearer " + "x" * 300,
    ],
    ids=["missing", "unknown", "basic", "empty", "two-words", "too-long"],
)
def test_missing_or_unknown_token_is_401_and_stores_nothing(
    collector: RunningCollector, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = report(collector, make_report().to_json(), headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert stored(collector) == (0, 0)


def test_a_token_reports_for_its_customer_only(collector: RunningCollector) -> None:
    own = collector.ingest_headers("cust_1")
    assert report(collector, make_report().to_json(), own).status_code == 201
    before = stored(collector)
    other = make_report(customer_id="cust_2")
    response = report(collector, other.to_json(), own)
    assert_error(response, 403, "forbidden")
    assert response.json()["field"] == "customer_id"
    assert "cust_2" in response.json()["detail"]
    assert stored(collector) == before


def test_a_legacy_body_for_another_customer_is_refused_too(collector: RunningCollector) -> None:
    body = '{"customer_id": "cust_2", "instance_id": "i", "metrics": {"devices": 1}}'
    assert_error(report(collector, body, collector.ingest_headers("cust_1")), 403, "forbidden")
    assert stored(collector) == (0, 0)


def test_operator_keys_cannot_ingest(collector: RunningCollector) -> None:
    response = report(collector, make_report().to_json(), collector.operator_headers("admin"))
    assert_error(response, 403, "forbidden")
    assert stored(collector) == (0, 0)


def test_tokens_from_the_cli_are_shown_once_listed_and_revoked(database_url: str) -> None:
    env = {"COLLECTOR_DATABASE_URL": database_url}
    runner = CliRunner()
    with run_collector(database_url, auth_cache_ttl=0) as collector:
        created = runner.invoke(
            main, ["tokens", "create", "--customer", "cust_1", "--name", "edge-1"], env=env
        )
        assert created.exit_code == 0, created.output
        secret = created.output.strip().splitlines()[-1]
        token_id = re.search(r"token (tok_\w+)", created.output).group(1)  # type: ignore[union-attr]
        assert secret.startswith("umt_")
        assert report(collector, make_report().to_json(), bearer(secret)).status_code == 201

        listed = runner.invoke(main, ["tokens", "list"], env=env)
        assert listed.exit_code == 0
        assert token_id in listed.output
        assert "cust_1" in listed.output
        assert "edge-1" in listed.output
        assert secret not in listed.output
        assert secret not in dump_database(collector)

        revoked = runner.invoke(main, ["tokens", "revoke", token_id], env=env)
        assert revoked.exit_code == 0, revoked.output
        again = make_report(hours_ago=2)
        assert_error(report(collector, again.to_json(), bearer(secret)), 401, "unauthorized")
        assert "revoked" in runner.invoke(main, ["tokens", "list"], env=env).output
        assert runner.invoke(main, ["tokens", "revoke", "tok_nope"], env=env).exit_code != 0


def dump_database(collector: RunningCollector) -> str:
    """Every stored credential column, as text, to search for a secret."""

    async def read() -> str:
        engine = create_engine(collector.settings.async_database_url())
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(CredentialRow.__table__))).all()
                return repr(rows)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_last_use_is_recorded(collector: RunningCollector) -> None:
    headers = collector.ingest_headers("cust_1")
    admin = collector.operator_headers("admin")
    for hours_ago in (1, 2, 3):
        report(collector, make_report(hours_ago).to_json(), headers)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tokens = httpx.get(f"{collector.url}/api/admin/tokens", headers=admin).json()
        if tokens[0]["last_used_at"] is not None:
            break
        time.sleep(0.05)
    assert tokens[0]["last_used_at"] is not None


# --- operator keys and the admin API -----------------------------------------------------------


def test_admin_api_creates_lists_and_revokes_tokens_and_keys(collector: RunningCollector) -> None:
    admin = collector.operator_headers("admin")
    url = f"{collector.url}/api/admin"
    created = httpx.post(
        f"{url}/tokens", json={"customer_id": "cust_9", "name": "a"}, headers=admin
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    token = created.json()
    assert token["secret"].startswith("umt_")
    assert token["customer_id"] == "cust_9"
    body = make_report(customer_id="cust_9").to_json()
    assert report(collector, body, bearer(token["secret"])).status_code == 201
    listed = httpx.get(f"{url}/tokens", params={"customer_id": "cust_9"}, headers=admin)
    assert [t["id"] for t in listed.json()] == [token["id"]]
    assert "secret" not in listed.json()[0]
    assert token["secret"] not in listed.text
    revoked = httpx.delete(f"{url}/tokens/{token['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    again = make_report(hours_ago=2, customer_id="cust_9").to_json()
    assert_error(report(collector, again, bearer(token["secret"])), 401, "unauthorized")
    assert_error(httpx.delete(f"{url}/tokens/tok_nope", headers=admin), 404, "not_found")

    key = httpx.post(f"{url}/keys", json={"role": "viewer", "name": "ops"}, headers=admin).json()
    assert key["secret"].startswith("umk_")
    assert key["role"] == "viewer"
    assert httpx.get(f"{collector.url}/api/usage/cust_9", headers=bearer(key["secret"])).is_success
    assert key["secret"] not in httpx.get(f"{url}/keys", headers=admin).text
    httpx.delete(f"{url}/keys/{key['id']}", headers=admin)
    response = httpx.get(f"{collector.url}/api/usage/cust_9", headers=bearer(key["secret"]))
    assert_error(response, 401, "unauthorized")
    bad_role = httpx.post(f"{url}/keys", json={"role": "root"}, headers=admin)
    assert bad_role.status_code == 400
    scoped_admin = httpx.post(
        f"{url}/keys", json={"role": "admin", "customer_id": "cust_9"}, headers=admin
    )
    assert_error(scoped_admin, 422, "validation_error")


def test_keys_from_the_cli_carry_their_role_and_scope(database_url: str) -> None:
    env = {"COLLECTOR_DATABASE_URL": database_url}
    runner = CliRunner()
    with run_collector(database_url) as collector:
        created = runner.invoke(
            main, ["keys", "create", "--role", "viewer", "--customer", "cust_1"], env=env
        )
        assert created.exit_code == 0, created.output
        secret = created.output.strip().splitlines()[-1]
        assert secret.startswith("umk_")
        own = httpx.get(f"{collector.url}/api/usage/cust_1", headers=bearer(secret))
        assert own.status_code == 200
        other = httpx.get(f"{collector.url}/api/usage/cust_2", headers=bearer(secret))
        assert_error(other, 403, "forbidden")
        listed = runner.invoke(main, ["keys", "list"], env=env).output
        assert "viewer" in listed
        assert "cust_1" in listed
        assert secret not in listed
        bad = runner.invoke(main, ["keys", "create", "--role", "root"], env=env)
        assert bad.exit_code != 0


def concrete(path: str) -> str:
    """A request path for a route pattern."""
    values = {"customer_id": "cust_1", "batch_id": "1", "credential_id": "tok_x", "path": "x"}
    return re.sub(r"\{(\w+):\w+\}", lambda m: values.get(m.group(1), "x"), path)


def every_route(collector: RunningCollector) -> list[tuple[str, str, str]]:
    """(method, route pattern, declared access) for every endpoint the app serves."""
    app = collector.app
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods):
                if method != "OPTIONS":
                    found.append((method, route.path, declared_access(handler, route.path)))
    return found


def call(collector: RunningCollector, method: str, path: str, headers: dict[str, str]) -> int:
    body = make_report().to_json() if path == "/api/usage/report" else "{}"
    return httpx.request(
        method,
        f"{collector.url}{concrete(path)}",
        content=body if method in ("POST", "PUT", "PATCH") else None,
        headers={"content-type": "application/json", **headers},
    ).status_code


def test_every_route_answers_each_role_as_declared(roomy: RunningCollector) -> None:
    """Covers routes added later: a route without a guard is admin-only (fail closed)."""
    callers = {
        "anonymous": {},
        "ingest": roomy.ingest_headers("cust_1"),
        **{role: roomy.operator_headers(role) for role in ROLES},
    }
    routes = every_route(roomy)
    assert {"GET /api/usage/{customer_id:str}", "POST /api/usage/report"} <= {
        f"{m} {p}" for m, p, _ in routes
    }
    for method, path, access in routes:
        for caller, headers in callers.items():
            status = call(roomy, method, path, headers)
            where = f"{method} {path} as {caller} ({access})"
            if access == PUBLIC:
                assert status not in (401, 403), where
            elif caller == "anonymous":
                assert status == 401, where
            elif access == "ingest":
                assert (status == 403) == (caller != "ingest"), where
            else:
                allowed = caller != "ingest" and RANK[caller] >= RANK[access]
                assert (status not in (401, 403)) == allowed, f"{where}: {status}"


def test_the_route_table_matches_the_issue(roomy: RunningCollector) -> None:
    declared = {f"{m} {p}": a for m, p, a in every_route(roomy)}
    expected = {
        "POST /api/usage/report": "ingest",
        "GET /api/usage/{customer_id:str}": "viewer",
        "GET /api/usage/{customer_id:str}/latest": "viewer",
        "GET /api/usage/{customer_id:str}/totals": "viewer",
        "GET /api/forwarding/status": "viewer",
        "GET /api/forwarding/batches": "viewer",
        "POST /api/forwarding/batches/{batch_id:int}/retry": "editor",
        "POST /api/forwarding/customers/{customer_id:str}/link": "editor",
        "GET /api/admin/tokens": "admin",
        "POST /api/admin/tokens": "admin",
        "DELETE /api/admin/tokens/{credential_id:str}": "admin",
        "GET /api/admin/keys": "admin",
        "POST /api/admin/keys": "admin",
        "DELETE /api/admin/keys/{credential_id:str}": "admin",
        "GET /health/live": PUBLIC,
        "GET /health/ready": PUBLIC,
        "GET /metrics": PUBLIC,
        "GET /schema/openapi.json": PUBLIC,
    }
    for route, access in expected.items():
        assert declared[route] == access, route
    for route, access in declared.items():
        if "reconcile" in route or "invoice-preview" in route:
            assert access == "viewer", route
        if "webhook" in route:
            assert access == PUBLIC, route


def test_a_scoped_key_sees_only_its_customer_on_every_customer_route(
    roomy: RunningCollector,
) -> None:
    """Every route with a customer in its path, reconcile and invoice preview included."""
    scoped = {
        role: roomy.operator_headers(role, customer_id="cust_1") for role in ("viewer", "editor")
    }
    token = roomy.ingest_headers("cust_1")
    customer_routes = [
        (m, p, a) for m, p, a in every_route(roomy) if "{customer_id" in p and a != PUBLIC
    ]
    assert len(customer_routes) >= 4
    for method, path, access in customer_routes:
        headers = scoped["editor"] if access == "editor" else scoped["viewer"]
        other = path.replace("{customer_id:str}", "cust_2")
        status = call(roomy, method, other, headers)
        assert status == 403, f"{method} {other}: {status}"
        assert call(roomy, method, other, token) == 403
        assert call(roomy, method, path, headers) not in (401, 403), f"{method} {path}"


@pytest.mark.parametrize("endpoint", ["reconcile", "invoice-preview"])
def test_reconcile_and_invoice_preview_refuse_other_customers(
    roomy: RunningCollector, endpoint: str
) -> None:
    patterns = {p for _, p, _ in every_route(roomy)}
    if f"/api/usage/{{customer_id:str}}/{endpoint}" not in patterns:
        pytest.skip(f"GET /api/usage/{{customer_id}}/{endpoint} is not in the app yet")
    scoped = roomy.operator_headers("viewer", customer_id="cust_1")
    other = httpx.get(f"{roomy.url}/api/usage/cust_2/{endpoint}", headers=scoped)
    assert_error(other, 403, "forbidden")
    token = httpx.get(
        f"{roomy.url}/api/usage/cust_1/{endpoint}", headers=roomy.ingest_headers("cust_1")
    )
    assert_error(token, 403, "forbidden")
    assert httpx.get(f"{roomy.url}/api/usage/cust_1/{endpoint}").status_code == 401


def test_a_scoped_key_cannot_use_endpoints_spanning_every_customer(
    collector: RunningCollector,
) -> None:
    scoped = collector.operator_headers("viewer", customer_id="cust_1")
    url = f"{collector.url}/api/forwarding/batches"
    assert_error(
        httpx.get(f"{collector.url}/api/forwarding/status", headers=scoped), 403, "forbidden"
    )
    assert_error(httpx.get(url, headers=scoped), 403, "forbidden")
    assert_error(httpx.get(url, params={"customer_id": "cust_2"}, headers=scoped), 403, "forbidden")
    assert httpx.get(url, params={"customer_id": "cust_1"}, headers=scoped).status_code == 200


# --- rate limit and the demo switch ------------------------------------------------------------


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(database_url: str) -> None:
    with run_collector(database_url, rate_limit_rps=0.01, rate_limit_burst=3) as collector:
        busy = collector.ingest_headers("cust_1")
        codes = [
            report(collector, make_report(hours).to_json(), busy).status_code
            for hours in range(1, 5)
        ]
        assert codes == [201, 201, 201, 429]
        limited = report(collector, make_report(5).to_json(), busy)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        calm = collector.ingest_headers("cust_2")
        body = make_report(customer_id="cust_2").to_json()
        assert report(collector, body, calm).status_code == 201
        assert count_rows(collector.database_url) == 4


def test_auth_disabled_serves_without_credentials_and_warns_at_start(database_url: str) -> None:
    with (
        structlog.testing.capture_logs() as logs,
        run_collector(database_url, auth_disabled=True) as collector,
    ):
        assert report(collector, make_report().to_json(), {}).status_code == 201
        assert httpx.get(f"{collector.url}/api/usage/cust_1").status_code == 200
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert any("AUTHENTICATION IS DISABLED" in e["event"] for e in warnings)
