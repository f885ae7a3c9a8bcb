"""One customer can neither read nor damage another customer's data (issue 10, items 1 to 3)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import httpx

from collector.adapters.db.tables import ReportRow
from common.schema import derive_report_id
from tests.integration.collector.test_ingest import make_report
from tests.support.collector import RunningCollector, count_rows

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail", "field"}
    if code is not None:
        assert response.json()["error"] == code


def post(collector: RunningCollector, body: str, customer: str) -> httpx.Response:
    return httpx.post(
        f"{collector.url}/api/usage/report",
        content=body,
        headers={"content-type": "application/json", **collector.ingest_headers(customer)},
    )


def test_a_repeated_customer_parameter_is_refused_not_read_for_another_customer(
    collector: RunningCollector,
) -> None:
    """Item 1: the guard checked the first ``customer_id`` and the handler used the last."""
    scoped = collector.operator_headers("viewer", customer_id="cust_a")
    for path in ("/api/forwarding/batches", "/api/forwarding/audit"):
        twice = httpx.get(
            f"{collector.url}{path}?customer_id=cust_a&customer_id=cust_b", headers=scoped
        )
        assert_error(twice, 400, "bad_request")
        assert "customer_id" in twice.json()["detail"]
    unknown = httpx.get(
        f"{collector.url}/api/forwarding/batches?customer=cust_b",
        headers=collector.operator_headers("viewer"),
    )
    assert_error(unknown, 400, "bad_request")
    assert "customer" in unknown.json()["detail"]


def test_a_report_id_other_than_the_derived_one_is_refused(collector: RunningCollector) -> None:
    """Item 2: cust_a pre-empted cust_b's next report id, and cust_b's report got 409."""
    victim = make_report(customer_id="cust_b", instance_id="edge", hours_ago=1)
    stolen = victim.expected_report_id
    body = json.loads(make_report(customer_id="cust_a", hours_ago=1).to_json())
    body["report_id"] = str(stolen)
    assert_error(post(collector, json.dumps(body), "cust_a"), 422, "validation_error")
    assert post(collector, victim.to_json(), "cust_b").status_code == 201
    start, end = victim.window_start, victim.window_end
    assert derive_report_id("cust_b", "edge", start, end) == stolen
    assert count_rows(collector.database_url, ReportRow) == 1


def test_one_customers_overflowing_report_does_not_fail_another_customers_reports(
    collector: RunningCollector,
) -> None:
    """Item 3: six cust_a reports with active_devices = 2**64 made 24 cust_b reports answer 500."""
    bad = []
    for hour in range(1, 7):
        body = json.loads(make_report(customer_id="cust_a", hours_ago=hour).to_json())
        body["active_devices"] = 2**64
        bad.append(("cust_a", json.dumps(body)))
    good = [
        ("cust_b", make_report(customer_id="cust_b", instance_id=f"i{n}", hours_ago=1).to_json())
        for n in range(24)
    ]
    headers = {c: collector.ingest_headers(c) for c in ("cust_a", "cust_b")}

    async def send_all() -> list[tuple[str, httpx.Response]]:
        async with httpx.AsyncClient(base_url=collector.url, timeout=30) as client:

            async def one(customer: str, body: str) -> tuple[str, httpx.Response]:
                answer = await client.post(
                    "/api/usage/report",
                    content=body,
                    headers={"content-type": "application/json", **headers[customer]},
                )
                return customer, answer

            return await asyncio.gather(*(one(c, b) for c, b in bad + good))

    answers = asyncio.run(send_all())
    assert [a.status_code for c, a in answers if c == "cust_b"] == [201] * 24
    for customer, answer in answers:
        if customer == "cust_a":
            assert_error(answer, 422, "validation_error")
    assert count_rows(collector.database_url, ReportRow) == 24


def test_datetimes_outside_2000_to_2100_are_refused_with_a_4xx(
    collector: RunningCollector,
) -> None:
    """Item 4, the report part: ``as_utc`` overflowed on a window at the end of year 9999."""
    body = json.loads(make_report(customer_id="cust_a").to_json())
    body["window_start"] = "9999-12-31T22:00:00-14:00"
    body["window_end"] = "9999-12-31T23:00:00-14:00"
    assert_error(post(collector, json.dumps(body), "cust_a"), 422, "validation_error")
    body["window_start"] = (NOW - timedelta(hours=1)).isoformat()
    body["window_end"] = "0001-01-01T00:00:00+14:00"
    assert_error(post(collector, json.dumps(body), "cust_a"), 422, "validation_error")
    assert count_rows(collector.database_url, ReportRow) == 0


def test_extreme_times_and_tampered_cursors_get_422_not_500(collector: RunningCollector) -> None:
    """Item 4: ``as_utc`` and ``decode_cursor`` overflowed on times at the ends of the calendar."""
    viewer = collector.operator_headers("viewer")
    for path in ("/api/usage/cust_a", "/api/usage/cust_a/totals"):
        for name, value in (
            ("since", "0001-01-01T00:00:00+14:00"),
            ("until", "9999-12-31T23:59:59-14:00"),
        ):
            answer = httpx.get(f"{collector.url}{path}", params={name: value}, headers=viewer)
            assert_error(answer, 422)
    for raw in ("9999-12-31T23:59:59-14:00|1", f"2026-01-01T00:00:00+00:00|{'9' * 30}"):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        answer = httpx.get(
            f"{collector.url}/api/usage/cust_a", params={"cursor": cursor}, headers=viewer
        )
        assert_error(answer, 422)
