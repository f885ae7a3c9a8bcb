"""The ingest lane answers exactly as Litestar's handler does (issue 14).

Two collectors on two fresh databases, one with the lane and one without, get the same requests
in the same order from the same clock: every answer (status, headers that matter, body), every
stored report and outbox row, every log event and every Prometheus sample must be the same. The
requests cover what the lane takes (new reports, repeats, several body chunks) and what it must
hand on (every refusal, a conflict after storing, a rate limit it decided, a late body).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from structlog.testing import capture_logs

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.tables import FORWARDS, REPORTS
from collector.api.app import Services, build_services, create_app
from collector.settings import CollectorSettings
from common.clock import ManualClock
from tests.support.credentials import issue_key, issue_token
from tests.support.postgres import create_database

START = datetime(2026, 3, 10, 12, 0, 7, tzinfo=UTC)
END = START.replace(minute=0, second=0)
WINDOW = (END - timedelta(hours=1), END)
SHOWN_HEADERS = ("content-type", "content-length", "retry-after", "allow")


def report(instance: str, customer: str = "acme", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": 1,
        "customer_id": customer,
        "instance_id": instance,
        "window_start": WINDOW[0].isoformat().replace("+00:00", "Z"),
        "window_end": WINDOW[1].isoformat().replace("+00:00", "Z"),
        "metrics": {"devices": 3, "mqtt_messages": 1000, "storage_gb": 1.5},
        "active_devices": 3,
        "total_devices": 5,
        "agent_version": "lane-test",
    }
    body.update(changes)
    return body


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class Collector:
    app: Any
    services: Services
    registry: CollectorRegistry
    secrets: dict[str, str]
    url: str
    credential_ids: dict[str, str]

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.secrets[who]}", **extra}

    def normalised(self, text: str) -> str:
        for who, secret in self.secrets.items():
            text = text.replace(secret, f"<{who}>")
        for credential, who in self.credential_ids.items():
            text = text.replace(credential, f"<{who}-id>")
        return text


async def _credential_ids(services: Services, secrets: dict[str, str]) -> dict[str, str]:
    ids = {}
    for who, secret in secrets.items():
        principal = await services.authenticator.authenticate(f"Bearer {secret}")
        ids[principal.credential_id] = who
    return ids


@asynccontextmanager
async def collector(database_url: str, *, lane: bool, **overrides: Any) -> AsyncIterator[Collector]:
    settings = CollectorSettings(
        database_url=database_url,
        ingest_lane=lane,
        **{"rate_limit_rps": 1000.0, "rate_limit_burst": 1000, **overrides},
    )
    await upgrade_async(settings.async_database_url())
    secrets = {
        "acme": (await asyncio.to_thread(issue_token, database_url, "acme")).secret,
        "other": (await asyncio.to_thread(issue_token, database_url, "other")).secret,
        "admin": (await asyncio.to_thread(issue_key, database_url, "admin")).secret,
        "viewer": (await asyncio.to_thread(issue_key, database_url, "viewer")).secret,
    }
    registry = CollectorRegistry()
    services = build_services(settings, clock=ManualClock(START), registry=registry)
    app = create_app(settings, services)
    try:
        ids = await _credential_ids(services, secrets)
        yield Collector(app, services, registry, secrets, database_url, ids)
    finally:
        await services.authenticator.close()
        await services.close()


Request = Callable[[Collector], tuple[str, str, Any, bytes]]
POST = "/api/usage/report"
JSON = {"content-type": "application/json"}


def post(body: bytes, who: str | None = "acme", path: str = POST, **headers: str) -> Request:
    def build(c: Collector) -> tuple[str, str, Any, bytes]:
        given = {**JSON, **headers}
        if who is not None:
            given = {**c.headers(who), **given}
        return "POST", path, given, body

    return build


def twice(body: bytes, name: str, first: str, second: str) -> Request:
    """A header sent twice: the app heeds the first."""

    def build(c: Collector) -> tuple[str, str, Any, bytes]:
        given = [*c.headers("acme").items(), *JSON.items()]
        given = [(k, v) for k, v in given if k != name]
        values = {
            "acme": c.headers("acme")["authorization"],
            "other": c.headers("other")["authorization"],
        }
        given += [(name, values.get(first, first)), (name, values.get(second, second))]
        return "POST", POST, given, body

    return build


SEQUENCE: list[tuple[str, Request]] = [
    ("new", post(encoded(report("i-1")))),
    ("repeat", post(encoded(report("i-1")))),
    ("conflict after storing", post(encoded(report("i-1", metrics={"devices": 4})))),
    ("second instance", post(encoded(report("i-2")))),
    (
        "merge-patch media type",
        post(
            encoded(report("i-3")),
            **{"content-type": "application/merge-patch+json; charset=utf-8"},
        ),
    ),
    ("derived report id given", post(encoded(report("i-4", report_id=None)))),
    ("no credential", post(encoded(report("i-5")), who=None)),
    ("unknown credential", post(encoded(report("i-5")), authorization="Bearer usg_tok_nope")),
    ("malformed credential", post(encoded(report("i-5")), authorization="Basic abc")),
    ("operator key", post(encoded(report("i-5")), who="admin")),
    ("viewer key", post(encoded(report("i-5")), who="viewer")),
    ("another customer's token", post(encoded(report("i-5")), who="other")),
    ("no content type", post(encoded(report("i-5")), **{"content-type": ""})),
    ("text body", post(encoded(report("i-5")), **{"content-type": "text/plain"})),
    ("not json", post(b"{not json")),
    ("a list", post(b"[1, 2]")),
    ("unknown metric", post(encoded(report("i-5", metrics={"bogus": 1})))),
    ("fraction of a device", post(encoded(report("i-5", metrics={"devices": 1.5})))),
    ("window in the future", post(encoded(report("i-5", window_end="2026-03-10T13:00:00Z")))),
    ("window too old", post(encoded(report("i-5", window_start="2026-01-01T00:00:00Z")))),
    (
        "wrong report id",
        post(encoded(report("i-5", report_id="00000000-0000-5000-8000-000000000000"))),
    ),
    ("unknown field", post(encoded(report("i-5", colour="blue")))),
    ("deep nesting", post(b'{"a":' * 40 + b"1" + b"}" * 40)),
    ("long number", post(encoded(report("i-5")).replace(b"1000", b"1" * 60))),
    ("too large", post(b" " * 70_000 + encoded(report("i-5")))),
    ("lying content length", post(encoded(report("i-5")), **{"content-length": "1"})),
    ("query string", post(encoded(report("i-5")), path=POST + "?x=1")),
    (
        "legacy body",
        post(
            encoded({"customer_id": "acme", "instance_id": "i-6", "metrics": {"devices": 2}}),
            **{"idempotency-key": "k-1"},
        ),
    ),
    (
        "legacy repeat",
        post(
            encoded({"customer_id": "acme", "instance_id": "i-6", "metrics": {"devices": 2}}),
            **{"idempotency-key": "k-1"},
        ),
    ),
    (
        "offset times",
        post(
            encoded(
                report(
                    "i-7",
                    window_start="2026-03-10T12:00:00+01:00",
                    window_end="2026-03-10T13:00:00+01:00",
                )
            )
        ),
    ),
    ("unicode instance", post(encoded(report("i-\u00e9")))),
    ("partial", post(encoded(report("i-8", missing=["storage_gb"], metrics={"devices": 1})))),
    (
        "content type twice, text first",
        twice(encoded(report("i-10")), "content-type", "text/plain", "application/json"),
    ),
    (
        "content type twice, json first",
        twice(encoded(report("i-11")), "content-type", "application/json", "text/plain"),
    ),
    (
        "another customer's token first",
        twice(encoded(report("i-12")), "authorization", "other", "acme"),
    ),
    (
        "the customer's token first",
        twice(encoded(report("i-13")), "authorization", "acme", "other"),
    ),
    ("after the refusals", post(encoded(report("i-9")))),
]


async def _answers(c: Collector, requests: list[tuple[str, Request]]) -> list[Any]:
    answers = []
    transport = httpx.ASGITransport(app=c.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
        for name, build in requests:
            method, path, headers, body = build(c)
            response = await client.request(method, path, headers=headers, content=body)
            shown = {k: response.headers[k] for k in SHOWN_HEADERS if k in response.headers}
            answers.append((name, response.status_code, shown, c.normalised(response.text)))
    return answers


async def _stored(database_url: str) -> tuple[list[Any], list[Any]]:
    engine = create_engine(CollectorSettings(database_url=database_url).async_database_url())
    try:
        async with engine.connect() as conn:
            reports = (await conn.execute(select(REPORTS).order_by(REPORTS.c.id))).all()
            forwards = (await conn.execute(select(FORWARDS).order_by(FORWARDS.c.id))).all()
    finally:
        await engine.dispose()
    return [tuple(r) for r in reports], [tuple(f) for f in forwards]


def _samples(c: Collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in c.registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _events(logs: list[dict[str, Any]], c: Collector) -> list[str]:
    return [c.normalised(json.dumps(e, sort_keys=True, default=str)) for e in logs]


async def _run(database_url: str, lane: bool, requests: list[tuple[str, Request]], **o: Any) -> Any:
    async with collector(database_url, lane=lane, **o) as c:
        with capture_logs() as logs:
            answers = await _answers(c, requests)
        samples = _samples(c)
        events = _events(logs, c)
    return answers, await _stored(database_url), samples, events


@pytest.fixture
def second_database(database_url: str, request: pytest.FixtureRequest) -> str:
    if database_url.startswith("sqlite"):
        return database_url.replace("usage.db", "usage-without-lane.db")
    server = request.getfixturevalue("postgres_server")
    return str(create_database(server, f"lane_off_{uuid.uuid4().hex[:12]}"))


def _compare(with_lane: Any, without: Any) -> None:
    answers, stored, samples, events = with_lane
    answers_off, stored_off, samples_off, events_off = without
    for mine, theirs in zip(answers, answers_off, strict=True):
        assert mine == theirs
    assert stored == stored_off
    assert samples == samples_off
    assert events == events_off


def test_the_lane_answers_stores_counts_and_logs_as_litestar_does(
    database_url: str, second_database: str
) -> None:
    with_lane = asyncio.run(_run(database_url, True, SEQUENCE))
    without = asyncio.run(_run(second_database, False, SEQUENCE))
    _compare(with_lane, without)
    statuses = {name: status for name, status, _, _ in with_lane[0]}
    assert statuses["new"] == 201
    assert statuses["repeat"] == 200
    assert statuses["conflict after storing"] == 409
    assert statuses["another customer's token"] == 403
    assert statuses["too large"] == 413
    assert statuses["after the refusals"] == 201
    assert statuses["content type twice, text first"] == 415
    assert statuses["content type twice, json first"] == 201
    assert statuses["another customer's token first"] == 403
    assert statuses["the customer's token first"] == 201


RATE_LIMITED = [
    ("first", post(encoded(report("r-1")))),
    ("refused body", post(encoded(report("r-2", metrics={"bogus": 1})))),
    ("third", post(encoded(report("r-3")))),
    ("over the burst, valid", post(encoded(report("r-4")))),
    ("over the burst, refused body", post(encoded(report("r-5", metrics={"bogus": 1})))),
    ("over the burst, repeat", post(encoded(report("r-1")))),
]


def test_a_rate_limit_the_lane_decides_is_answered_once_and_counted_once(
    database_url: str, second_database: str
) -> None:
    limits = {"rate_limit_rps": 0.001, "rate_limit_burst": 3}
    with_lane = asyncio.run(_run(database_url, True, RATE_LIMITED, **limits))
    without = asyncio.run(_run(second_database, False, RATE_LIMITED, **limits))
    _compare(with_lane, without)
    assert [status for _, status, _, _ in with_lane[0]] == [201, 422, 201, 429, 429, 429]
    assert len(with_lane[1][0]) == 2


async def _drive(app: Any, messages: list[dict[str, Any]], headers: list[Any]) -> Any:
    """One request straight through ASGI: the body in ``messages``, then a client that waits."""
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": POST,
        "raw_path": POST.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3100),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


@pytest.mark.parametrize(
    "case",
    ["in three chunks", "stalled body", "client gone"],
)
def test_bodies_in_pieces_late_or_abandoned_are_answered_alike(
    database_url: str, second_database: str, case: str
) -> None:
    body = encoded(report("p-1"))
    third = len(body) // 3
    chunks = [body[:third], body[third : 2 * third], body[2 * third :]]
    messages: list[dict[str, Any]] = {
        "in three chunks": [
            {"type": "http.request", "body": chunk, "more_body": i < 2}
            for i, chunk in enumerate(chunks)
        ],
        "stalled body": [{"type": "http.request", "body": chunks[0], "more_body": True}],
        "client gone": [
            {"type": "http.request", "body": chunks[0], "more_body": True},
            {"type": "http.disconnect"},
        ],
    }[case]

    async def run(url: str, lane: bool) -> Any:
        async with collector(url, lane=lane, body_read_timeout=0.05) as c:
            headers = [
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {c.secrets['acme']}".encode()),
            ]
            try:
                answer = await _drive(c.app, [dict(m) for m in messages], headers)
            except Exception as exc:  # both sides must fail alike
                answer = type(exc).__name__
        return answer, await _stored(url)

    with_lane = asyncio.run(run(database_url, True))
    without = asyncio.run(run(second_database, False))
    assert with_lane == without
    if case == "in three chunks":
        assert with_lane[0][0] == 201
    if case == "stalled body":
        assert with_lane[0][0] == 408


def test_a_stalled_body_from_a_token_over_its_limit_hears_429_as_from_litestar(
    database_url: str, second_database: str
) -> None:
    first = encoded(report("s-1"))
    stalled = encoded(report("s-2"))[:20]

    async def run(url: str, lane: bool) -> Any:
        limits = {"rate_limit_rps": 0.001, "rate_limit_burst": 1, "body_read_timeout": 0.05}
        async with collector(url, lane=lane, **limits) as c:
            headers = [
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {c.secrets['acme']}".encode()),
            ]
            whole = {"type": "http.request", "body": first, "more_body": False}
            part = {"type": "http.request", "body": stalled, "more_body": True}
            answers = [await _drive(c.app, [whole], headers), await _drive(c.app, [part], headers)]
            return [(status, c.normalised(body.decode())) for status, body in answers]

    with_lane = asyncio.run(run(database_url, True))
    assert with_lane == asyncio.run(run(second_database, False))
    assert [status for status, _ in with_lane] == [201, 429]
