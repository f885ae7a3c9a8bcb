"""Every class of bad input gets its 4xx in the one error shape, and nothing is written."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from collector.adapters.db.tables import ForwardRow, ReportRow
from tests.integration.collector.test_ingest import make_report, post
from tests.support.collector import RunningCollector, count_rows

ERROR_KEYS = {"error", "detail", "field"}


def rows(collector: RunningCollector) -> tuple[int, int]:
    """(usage_reports, forwards) rows."""
    url = collector.database_url
    return count_rows(url, ReportRow), count_rows(url, ForwardRow)


def v1(**changes: object) -> dict[str, object]:
    """A valid v1 body as JSON-ready data, with ``changes`` applied."""
    body = json.loads(make_report().to_json())
    body.update(changes)
    return body


def iso(moment: datetime) -> str:
    return moment.isoformat()


NOW = datetime.now(UTC).replace(microsecond=0)

# (case, raw body, extra headers, status, error code, field or None, text in detail)
CASES: list[tuple[str, str | bytes, dict[str, str], int, str, str | None, str]] = [
    ("not json", "not json {", {}, 400, "invalid_json", None, "not valid JSON"),
    ("not utf-8", b"\xff\xfe{}", {}, 400, "invalid_json", None, "JSON"),
    ("json array", "[1, 2]", {}, 422, "validation_error", None, "object"),
    (
        "text/plain",
        make_report().to_json(),
        {"content-type": "text/plain"},
        415,
        "unsupported_media_type",
        "content-type",
        "application/json",
    ),
    (
        "form",
        "a=b",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
        "content-type",
        "application/json",
    ),
    (
        "unknown metric",
        json.dumps(v1(metrics={"bogus": 1})),
        {},
        422,
        "unknown_metric",
        "metrics.bogus",
        "allowed: api_requests, devices",
    ),
    (
        "negative",
        json.dumps(v1(metrics={"devices": -1})),
        {},
        422,
        "validation_error",
        "metrics",
        "negative",
    ),
    (
        "NaN literal",
        json.dumps(v1()).replace('"devices": 7', '"devices": NaN'),
        {},
        422,
        "validation_error",
        "metrics",
        "finite",
    ),
    (
        "Infinity literal",
        json.dumps(v1()).replace('"devices": 7', '"devices": Infinity'),
        {},
        422,
        "validation_error",
        "metrics",
        "finite",
    ),
    (
        "-Infinity literal",
        json.dumps(v1()).replace('"devices": 7', '"devices": -Infinity'),
        {},
        422,
        "validation_error",
        "metrics",
        "finite",
    ),
    (
        "overflow to inf",
        json.dumps(v1()).replace('"devices": 7', '"devices": 1e400'),
        {},
        422,
        "validation_error",
        "metrics",
        "finite",
    ),
    (
        "over 1e12",
        json.dumps(v1(metrics={"mqtt_messages": 1_000_000_000_001})),
        {},
        422,
        "validation_error",
        "metrics",
        "1e12",
    ),
    (
        "16 significant digits",
        json.dumps(v1(metrics={"storage_gb": 1.234567890123456})),
        {},
        422,
        "validation_error",
        "metrics",
        "15 significant digits",
    ),
    (
        "string value",
        json.dumps(v1(metrics={"devices": "7"})),
        {},
        422,
        "validation_error",
        "metrics",
        "must be a number",
    ),
    (
        "boolean value",
        json.dumps(v1(metrics={"devices": True})),
        {},
        422,
        "validation_error",
        "metrics",
        "must be a number",
    ),
    (
        "fractional devices",
        json.dumps(v1(metrics={"devices": 1.5})),
        {},
        422,
        "validation_error",
        "metrics.devices",
        "",
    ),
    (
        "end before start",
        json.dumps(
            v1(window_start=iso(NOW - timedelta(hours=1)), window_end=iso(NOW - timedelta(hours=2)))
        ),
        {},
        422,
        "validation_error",
        None,
        "must be after",
    ),
    (
        "end equals start",
        json.dumps(
            v1(window_start=iso(NOW - timedelta(hours=1)), window_end=iso(NOW - timedelta(hours=1)))
        ),
        {},
        422,
        "validation_error",
        None,
        "must be after",
    ),
    (
        "future window",
        # A day ahead: NOW is taken when the module is collected, which can be many minutes
        # before this case runs, and a window only 10 minutes ahead then is no longer refused.
        json.dumps(
            v1(
                window_start=iso(NOW + timedelta(days=1)),
                window_end=iso(NOW + timedelta(days=1, minutes=10)),
            )
        ),
        {},
        422,
        "invalid_window",
        "window_end",
        "5 minutes",
    ),
    (
        "too old window",
        json.dumps(
            v1(
                window_start=iso(NOW - timedelta(days=36)),
                window_end=iso(NOW - timedelta(days=36) + timedelta(hours=1)),
            )
        ),
        {},
        422,
        "invalid_window",
        "window_start",
        "35 days",
    ),
    (
        "empty customer",
        json.dumps(v1(customer_id="")),
        {},
        422,
        "validation_error",
        "customer_id",
        "empty",
    ),
    (
        "blank customer",
        json.dumps(v1(customer_id="   ")),
        {},
        422,
        "validation_error",
        "customer_id",
        "empty",
    ),
    (
        "long customer",
        json.dumps(v1(customer_id="c" * 129)),
        {},
        422,
        "validation_error",
        "customer_id",
        "128",
    ),
    (
        "control customer",
        json.dumps(v1(customer_id="cust\n1")),
        {},
        422,
        "validation_error",
        "customer_id",
        "control",
    ),
    (
        "empty instance",
        json.dumps(v1(instance_id="")),
        {},
        422,
        "validation_error",
        "instance_id",
        "empty",
    ),
    (
        "long instance",
        json.dumps(v1(instance_id="i" * 129)),
        {},
        422,
        "validation_error",
        "instance_id",
        "128",
    ),
    (
        "control instance",
        json.dumps(v1(instance_id="a\x00b")),
        {},
        422,
        "validation_error",
        "instance_id",
        "control",
    ),
    ("unknown field", json.dumps(v1(surprise=1)), {}, 422, "validation_error", "surprise", ""),
]


def send_raw(
    collector: RunningCollector, body: str | bytes, headers: dict[str, str]
) -> httpx.Response:
    auth = collector.ingest_headers("cust_1")
    return httpx.post(
        f"{collector.url}/api/usage/report",
        content=body.encode() if isinstance(body, str) else body,
        headers={"content-type": "application/json", **auth, **headers},
    )


@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "code", "field", "text"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_report_gets_its_error_and_writes_nothing(
    collector: RunningCollector,
    case: str,
    body: str | bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    field: str | None,
    text: str,
) -> None:
    before = rows(collector)
    response = send_raw(collector, body, headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == ERROR_KEYS
    assert error["error"] == code
    assert error["field"] == field
    assert text in error["detail"]
    assert rows(collector) == before


def test_unknown_metric_names_every_allowed_metric(collector: RunningCollector) -> None:
    detail = send_raw(collector, json.dumps(v1(metrics={"bogus": 1})), {}).json()["detail"]
    for name in ("devices", "mqtt_messages", "storage_gb", "api_requests"):
        assert name in detail


def test_conflicting_duplicate_is_409_and_the_stored_report_is_unchanged(
    collector: RunningCollector,
) -> None:
    report = make_report()
    assert post(collector, report.to_json()).status_code == 201
    before = rows(collector)
    changed = report.model_copy(update={"metrics": {"devices": 8, "mqtt_messages": 1}})
    response = post(collector, changed.to_json())
    assert response.status_code == 409
    assert response.json() == {
        "error": "conflict",
        "detail": response.json()["detail"],
        "field": "report_id",
    }
    assert rows(collector) == before
    stored = httpx.get(
        f"{collector.url}/api/usage/cust_1/latest", headers=collector.operator_headers("viewer")
    ).json()
    assert stored["metrics"] == {"devices": 7, "mqtt_messages": 1234, "storage_gb": 1.5}


def big_body(size: int) -> bytes:
    """A syntactically valid report padded past ``size`` bytes with whitespace."""
    body = make_report().to_json().encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_body_over_64_kib_is_413(collector: RunningCollector) -> None:
    before = rows(collector)
    response = send_raw(collector, big_body(64 * 1024 + 1), {})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert set(response.json()) == ERROR_KEYS
    assert "65536" in response.json()["detail"]
    assert rows(collector) == before


def test_body_of_exactly_64_kib_is_accepted(collector: RunningCollector) -> None:
    assert send_raw(collector, big_body(64 * 1024), {}).status_code == 201


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_chunked_body_without_content_length_is_counted_and_413(
    collector: RunningCollector,
) -> None:
    before = rows(collector)
    response = httpx.post(
        f"{collector.url}/api/usage/report",
        content=chunks(big_body(200 * 1024)),
        headers={"content-type": "application/json", **collector.ingest_headers("cust_1")},
    )
    assert response.status_code == 413
    assert set(response.json()) == ERROR_KEYS
    assert rows(collector) == before


def raw_request(collector: RunningCollector, head: str, body: bytes) -> bytes:
    """Send bytes on a socket of their own and return whatever comes back first."""
    parts = urlsplit(collector.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        # the server may answer and close before it has taken the whole body
        with contextlib.suppress(OSError):
            sock.sendall(head.encode() + body)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    return received


def test_declared_length_over_the_limit_is_refused_before_the_body(
    collector: RunningCollector,
) -> None:
    before = rows(collector)
    token = collector.ingest_headers("cust_1")["authorization"]
    head = (
        "POST /api/usage/report HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: {token}\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n"
    )
    answer = raw_request(collector, head, b"{}")
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "body_too_large"
    assert rows(collector) == before


def test_content_length_smaller_than_the_body_stores_nothing(collector: RunningCollector) -> None:
    """HTTP framing reads only the declared bytes: a truncated JSON body, never a report."""
    before = rows(collector)
    token = collector.ingest_headers("cust_1")["authorization"]
    body = big_body(100 * 1024)
    head = (
        "POST /api/usage/report HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: {token}\r\ncontent-length: 20\r\nconnection: close\r\n\r\n"
    )
    answer = raw_request(collector, head, body)
    assert answer.startswith(b"HTTP/1.1 4")
    assert rows(collector) == before
    assert httpx.get(f"{collector.url}/health/live").status_code == 200


def test_litestar_errors_use_the_same_shape(collector: RunningCollector) -> None:
    viewer = collector.operator_headers("viewer")
    cases = [
        httpx.get(f"{collector.url}/no/such/path"),
        httpx.put(f"{collector.url}/api/usage/report", headers=viewer),
        httpx.get(f"{collector.url}/api/usage/cust_1", params={"limit": "x"}, headers=viewer),
        httpx.get(f"{collector.url}/api/usage/{'c' * 200}", headers=viewer),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()) == ERROR_KEYS, response.text
