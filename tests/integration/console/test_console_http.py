"""The console through Litestar, without a browser: sessions, cookies, CSRF, roles and scopes.

The collector's services forward to the Stripe sandbox on a manual clock (the harness of the
forwarding tests); requests go through the whole app, middleware and guards included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from collector.api.console import FORM_MAX_BYTES
from collector.services.principals import Kind
from common.clock import ManualClock
from tests.integration.console.pages import (
    LINKED,
    UNLINKED,
    browser,
    form_token,
    key,
    seeded,
    sign_in,
    signed_in,
)
from tests.support.forwarding import Harness, harness
from tests.support.stripe_sandbox import Sandbox

PAGES = ("/console/", "/console/customers", "/console/customers/cust_a", "/console/forwarding")


@pytest.fixture
async def h(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as running:
        yield running


@pytest.fixture
async def dead(h: Harness) -> dict[str, Any]:
    return await seeded(h)


def cookies_of(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            found[name] = morsel
    return found


async def retry(client: httpx.AsyncClient, batch_id: int, token: str | None, **headers: str) -> Any:
    data = {"csrf": token} if token is not None else {}
    return await client.post(
        f"/console/forwarding/batches/{batch_id}/retry", data=data, headers=headers
    )


async def batch_state(h: Harness, batch_id: int) -> str:
    (row,) = [b for b in await h.services.outbox.batches(None, None, 100) if b.id == batch_id]
    return str(row.state)


async def test_sign_in_keeps_a_signed_httponly_strict_cookie_and_never_the_key(h: Harness) -> None:
    secret = await key(h, "viewer")
    async with browser(h) as client:
        form = await client.get("/console/sign-in")
        pre = cookies_of(form)["usage_console_sign_in"]
        assert (pre["httponly"], pre["samesite"], pre["path"]) == (
            True,
            "strict",
            "/console/sign-in",
        )
        answer = await sign_in(client, secret)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/"
        session = cookies_of(answer)["usage_console"]
        assert session["httponly"] is True
        assert session["samesite"] == "strict"
        assert session["path"] == "/console"
        assert session["secure"] == ""
        assert int(session["max-age"]) == 8 * 3600
        assert secret not in session.value
        payload = json.loads(base64.urlsafe_b64decode(session.value.split(".")[0] + "=="))
        assert set(payload) == {"cid", "exp", "n"}
        assert (await client.get("/console/")).status_code == 200


async def test_behind_an_https_proxy_the_cookies_are_secure(h: Harness) -> None:
    secret = await key(h, "viewer")
    https = {"x-forwarded-proto": "https"}
    async with browser(h) as client:
        form = await client.get("/console/sign-in", headers=https)
        bound = cookies_of(form)["usage_console_sign_in"]
        assert bound["secure"] is True
        # httpx keeps a Secure cookie for https only; the proxy in front would have passed it.
        client.cookies.set("usage_console_sign_in", bound.value, path="/console/sign-in")
        answer = await client.post(
            "/console/sign-in",
            data={"csrf": form_token(form.text), "key": secret},
            headers=https,
        )
        assert answer.status_code == 303
        assert cookies_of(answer)["usage_console"]["secure"] is True


async def test_a_page_without_a_session_sends_to_sign_in_and_back_never_elsewhere(
    h: Harness,
) -> None:
    secret = await key(h, "viewer")
    async with browser(h) as client:
        away = await client.get("/console/customers?sort=dead")
        assert away.status_code == 303
        assert (
            away.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fcustomers%3Fsort%3Ddead"
        )
        form = await client.get(away.headers["location"])
        assert 'name="next" value="/console/customers?sort=dead"' in form.text
    for target, landing in (
        ("/console/customers?sort=dead", "/console/customers?sort=dead"),
        ("https://evil.example/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/console//evil.example", "/console/"),
        ("/console/\\evil.example", "/console/"),
    ):
        async with browser(h) as client:
            form = await client.get("/console/sign-in")
            answer = await client.post(
                "/console/sign-in",
                data={"csrf": form_token(form.text), "key": secret, "next": target},
            )
            assert answer.headers["location"] == landing, target


async def test_htmx_is_told_to_load_the_sign_in_page_whole(h: Harness) -> None:
    async with browser(h) as client:
        answer = await client.get("/console/", headers={"hx-request": "true", "hx-target": "live"})
    assert answer.status_code == 200
    assert answer.headers["hx-redirect"] == "/console/sign-in?next=%2Fconsole%2F"
    assert answer.content == b""


async def test_a_sign_in_posted_without_its_form_is_refused(h: Harness) -> None:
    """Login CSRF: another site cannot sign a browser in under the attacker's key."""
    secret = await key(h, "admin")
    async with browser(h) as client:
        bare = await client.post("/console/sign-in", data={"key": secret})
        assert bare.status_code == 400
        assert "usage_console" not in cookies_of(bare)
        form = await client.get("/console/sign-in")
        forged = await client.post(
            "/console/sign-in", data={"csrf": "x" + form_token(form.text)[1:], "key": secret}
        )
        assert forged.status_code == 400
        cross = await client.post(
            "/console/sign-in",
            data={"csrf": form_token(form.text), "key": secret},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert cross.status_code == 403
        assert "usage_console" not in cookies_of(cross)
        assert (await client.get("/console/")).status_code == 303


async def test_an_oversized_sign_in_form_gets_413_and_a_normal_one_still_signs_in(
    h: Harness,
) -> None:
    """Anyone can post the sign-in form: its body is held to the console's limit, which is far
    below the API's (COLLECTOR_MAX_BODY_BYTES)."""
    assert h.settings.max_body_bytes > FORM_MAX_BYTES
    secret = await key(h, "viewer")
    async with browser(h) as client:
        form = await client.get("/console/sign-in")
        padded = await client.post(
            "/console/sign-in",
            data={
                "csrf": form_token(form.text),
                "key": secret,
                "next": "/console/" + "x" * FORM_MAX_BYTES,
            },
        )
        assert padded.status_code == 413
        assert padded.headers["content-type"].startswith("text/html")
        assert "larger than the console accepts" in padded.text
        assert "usage_console" not in cookies_of(padded)
        answer = await sign_in(client, secret)
        assert answer.status_code == 303
        assert (await client.get("/console/")).status_code == 200


async def test_unknown_keys_and_ingest_tokens_cannot_sign_in_and_are_logged_without_the_secret(
    h: Harness,
) -> None:
    token = (await h.services.credentials.create_token("cust_a")).secret
    async with browser(h) as client:
        with capture_logs() as logs:
            for secret, status, message in (
                ("umk_" + "x" * 40, 401, "unknown or revoked"),
                (token, 403, "ingest tokens only report usage"),
                ("not a key at all!", 401, "unknown or revoked"),
            ):
                answer = await sign_in(client, secret)
                assert answer.status_code == status, secret
                assert message in answer.text
                assert "usage_console" not in cookies_of(answer)
    refused = [entry for entry in logs if entry["event"] == "auth_refused"]
    assert len(refused) == 3
    assert all(token not in repr(entry) for entry in logs)
    assert {entry.get("credential") for entry in refused} >= {"operator_key", "ingest_token"}


async def test_a_retry_needs_this_sessions_form_token(h: Harness, dead: dict[str, Any]) -> None:
    batch = dead["dead"]
    async with signed_in(h, "editor") as editor, signed_in(h, "editor") as other:
        theirs = form_token((await other.get("/console/forwarding")).text)
        for token in (None, "", theirs, "x" * 43):
            answer = await retry(editor, batch.id, token)
            assert answer.status_code == 403, token
            assert "did not come from your console session" in answer.text
        page = await editor.get("/console/forwarding?state=dead")
        mine = form_token(page.text)
        cross = await retry(editor, batch.id, mine, **{"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        assert await batch_state(h, batch.id) == "dead"
        done = await retry(editor, batch.id, mine, **{"sec-fetch-site": "same-origin"})
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/forwarding?state=dead&retried={batch.id}"
        assert await batch_state(h, batch.id) == "pending"
        shown = await editor.get(done.headers["location"])
        assert f"Batch {batch.id} is queued again" in shown.text


@pytest.mark.parametrize(
    ("role", "customer", "allowed"),
    [
        ("viewer", None, False),
        ("editor", "cust_a", False),
        ("viewer", "cust_a", False),
        ("editor", None, True),
        ("admin", None, True),
    ],
)
async def test_only_an_editor_for_every_customer_retries_as_in_the_api(
    h: Harness, dead: dict[str, Any], role: str, customer: str | None, allowed: bool
) -> None:
    batch = dead["dead"]
    async with signed_in(h, role, customer) as client:
        page = await client.get("/console/forwarding?state=dead")
        assert (f'data-retry="{batch.id}"' in page.text) == allowed
        answer = await retry(client, batch.id, form_token(page.text))
    assert answer.status_code == (303 if allowed else 403)
    assert await batch_state(h, batch.id) == ("pending" if allowed else "dead")


async def test_a_scoped_key_sees_its_customer_only(h: Harness, dead: dict[str, Any]) -> None:
    async with signed_in(h, "viewer", "cust_a") as client:
        listed = (await client.get("/console/customers")).text
        assert re.findall(r'data-customer="([^"]+)"', listed) == ["cust_a"]
        for other in ("cust_b", UNLINKED, "never_seen"):
            refused = await client.get(f"/console/customers/{other}")
            assert refused.status_code == 403, other
            assert "may not access customer" in refused.text
        assert (await client.get("/console/customers/cust_a")).status_code == 200
        overview = (await client.get("/console/")).text
        assert re.search(r'data-figure="unlinked">0<', overview)
        assert 'data-figure="calls-saved"' not in overview
        for state in ("sent", "dead"):
            page = (await client.get(f"/console/forwarding?state={state}")).text
            owners = set(re.findall(r'href="/console/customers/([^"]+)"', page))
            assert owners <= {"cust_a"}, state
        assert 'data-batch="' in (await client.get("/console/forwarding?state=sent")).text


async def test_the_forwarding_page_says_whether_this_replica_leads(h: Harness) -> None:
    leadership = h.services.leadership
    async with signed_in(h, "viewer") as client:
        assert "data-leadership" not in (await client.get("/console/forwarding")).text
        assert await leadership.step()
        page = (await client.get("/console/forwarding")).text
        stop = asyncio.Event()
        stop.set()
        await leadership.run(stop)  # steps down at once: the loop sees stop set
        after = (await client.get("/console/forwarding")).text
    assert 'data-leadership="leader"' in page
    assert leadership.status().replica in page
    assert "once-only tasks: ageing" in page
    assert 'data-leadership="follower"' in after
    async with signed_in(h, "viewer", "cust_a") as scoped:
        assert "data-leadership" not in (await scoped.get("/console/forwarding")).text


async def test_every_page_works_without_javascript(h: Harness, dead: dict[str, Any]) -> None:
    """No inline script, every action a plain form, every sort a plain link."""
    async with signed_in(h, "editor") as client:
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert page.headers["cache-control"] == "no-store"
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            scripts = re.findall(r"<script[^>]*>", page.text)
            assert scripts == ['<script src="/console/static/htmx-2.0.11.min.js" defer>'], path
            assert "<script>" not in page.text
            assert re.search(r"<[^>]+\son[a-z]+=", page.text) is None, path
            for form in re.findall(r"<form[^>]*>", page.text):
                assert 'action="/console/' in form, form
        customers = (await client.get("/console/customers")).text
        assert 'href="/console/customers?sort=dead&amp;order=desc"' in customers
        sorted_page = (await client.get("/console/customers?sort=customer&order=desc")).text
        assert re.findall(r'data-customer="([^"]+)"', sorted_page) == sorted(
            [*LINKED, UNLINKED], reverse=True
        )
        overview = (await client.get("/console/")).text
        for name in ("in_sync", "drifting", "unlinked", "queue-pending", "queue-dead"):
            assert f'data-figure="{name}"' in overview
        chart = (await client.get("/console/customers/cust_a")).text
        assert chart.count('class="usage-chart"') >= 3
        static = await client.get("/console/static/htmx-2.0.11.min.js")
        assert static.status_code == 200
        assert static.headers["content-type"].startswith("text/javascript")


async def test_htmx_gets_the_live_fragment_only(h: Harness, dead: dict[str, Any]) -> None:
    async with signed_in(h, "viewer") as client:
        for path in ("/console/", "/console/forwarding?state=dead"):
            fragment = await client.get(path, headers={"hx-request": "true", "hx-target": "live"})
            assert fragment.text.lstrip().startswith('<div id="live"'), path
            assert "<html" not in fragment.text
            assert 'hx-trigger="every 30s"' in fragment.text
            assert "HX-Target" in fragment.headers["vary"]
            whole = await client.get(path)
            assert whole.text.lstrip().startswith("<!doctype html>")


async def test_live_refresh_can_be_turned_off(h: Harness) -> None:
    secret = await key(h, "viewer")
    async with browser(h, console_refresh=0) as client:
        await sign_in(client, secret)
        assert "hx-trigger" not in (await client.get("/console/")).text


async def test_a_session_ends_with_its_lifetime_and_with_its_key(h: Harness) -> None:
    async with signed_in(h, "viewer") as client:
        assert (await client.get("/console/")).status_code == 200
        h.clock.advance(timedelta(hours=8) - timedelta(seconds=1))
        assert (await client.get("/console/")).status_code == 200
        h.clock.advance(timedelta(seconds=1))
        assert (await client.get("/console/")).status_code == 303
    async with signed_in(h, "viewer") as client:
        (issued,) = [k for k in await h.services.credentials.list(Kind.OPERATOR) if not k.revoked][
            -1:
        ]
        await h.services.credentials.revoke(Kind.OPERATOR, issued.id)
        assert (await client.get("/console/")).status_code == 303


async def test_a_cookie_changed_by_hand_is_refused(h: Harness) -> None:
    viewer_secret = await key(h, "viewer")
    await key(h, "admin")
    async with browser(h) as client:
        admin_id = None
        for credential in await h.services.credentials.list(Kind.OPERATOR):
            if credential.role == "admin":
                admin_id = credential.id
        cookie = cookies_of(await sign_in(client, viewer_secret))["usage_console"].value
        body, signature = cookie.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=="))
        payload["cid"] = admin_id
        forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        client.cookies.set("usage_console", f"{forged}.{signature}", path="/console")
        assert (await client.get("/console/")).status_code == 303


async def test_sign_out_needs_the_form_token_and_forgets_the_cookie(h: Harness) -> None:
    async with signed_in(h, "viewer") as client:
        page = await client.get("/console/")
        refused = await client.post("/console/sign-out", data={"csrf": "nope"})
        assert refused.status_code == 403
        out = await client.post("/console/sign-out", data={"csrf": form_token(page.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/sign-in"
        assert cookies_of(out)["usage_console"]["max-age"] == "0"
        assert (await client.get("/console/")).status_code == 303


async def test_another_replica_with_the_same_secret_accepts_the_session(h: Harness) -> None:
    shared = {"console_session_secret": "s" * 40}
    secret = await key(h, "viewer")
    async with browser(h, **shared) as first, browser(h, **shared) as second:
        await sign_in(first, secret)
        second.cookies = first.cookies
        assert (await second.get("/console/")).status_code == 200
    async with browser(h, **shared) as first, browser(h) as unshared:
        await sign_in(first, secret)
        unshared.cookies = first.cookies
        assert (await unshared.get("/console/")).status_code == 303


async def test_with_authentication_off_the_console_needs_no_sign_in(h: Harness) -> None:
    async with browser(h, auth_disabled=True) as client:
        page = await client.get("/console/")
        assert page.status_code == 200
        assert "anonymous (auth disabled)" in page.text
        assert (await client.get("/console/sign-in")).headers["location"] == "/console/"


async def test_the_console_can_be_turned_off(h: Harness) -> None:
    async with browser(h, console_enabled=False) as client:
        assert (await client.get("/console/")).status_code == 404
        assert (await client.get("/console/static/console.css")).status_code == 404


async def test_api_bodies_stay_json_only_beside_the_console_forms(h: Harness) -> None:
    token = (await h.services.credentials.create_token("cust_a")).secret
    async with browser(h) as client:
        answer = await client.post(
            "/api/usage/report",
            data={"customer_id": "cust_a"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_media_type"


async def test_errors_are_pages_naming_what_to_fix(h: Harness, dead: dict[str, Any]) -> None:
    async with signed_in(h, "viewer") as client:
        missing = await client.get("/console/customers/never_seen")
        assert missing.status_code == 404
        assert "never reported and is not linked" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in missing.headers["content-security-policy"]
        bad = await client.get("/console/customers?sort=nonsense")
        assert bad.status_code == 400
        assert "<!doctype html>" in bad.text
        stray = await client.get("/console/customers?utm_source=mail")
        assert stray.status_code == 200


async def test_sessions_and_pages_on_postgresql(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, postgres_url: str
) -> None:
    async with harness(stripe_sandbox.url, sandbox_clock, postgres_url, "meter_events") as pg:
        found = await seeded(pg)
        async with signed_in(pg, "editor") as client:
            for path in PAGES:
                assert (await client.get(path)).status_code == 200, path
            page = await client.get("/console/forwarding?state=dead")
            answer = await retry(client, found["dead"].id, form_token(page.text))
            assert answer.status_code == 303
        assert await batch_state(pg, found["dead"].id) == "pending"
        async with signed_in(pg, "viewer", "cust_b") as scoped:
            assert (await scoped.get("/console/customers/cust_a")).status_code == 403
