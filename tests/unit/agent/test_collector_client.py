"""The collector's answers become deliveries or errors whose type carries the retry policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agent.adapters.collector_client import (
    Accepted,
    CollectorClient,
    Delivery,
    parse_retry_after,
)
from agent.errors import CollectorConflict, CollectorRejected, CollectorUnavailable
from common.clock import ManualClock
from common.schema import UsageReport

BASE = "http://collector.test"
URL = f"{BASE}/api/usage/report"
NOW = datetime(2024, 3, 1, 11, tzinfo=UTC)
REPORT = UsageReport(
    customer_id="cust",
    instance_id="inst",
    window_start=NOW - timedelta(hours=1),
    window_end=NOW,
    metrics={"devices": 3, "mqtt_messages": 1200},
    active_devices=3,
    total_devices=5,
    agent_version="test",
)


async def send(report: UsageReport = REPORT, token: str | None = None) -> Accepted:
    async with httpx.AsyncClient() as client:
        return await CollectorClient(client, BASE + "/", token=token, clock=ManualClock(NOW)).send(
            report
        )


async def test_created_posts_the_v1_json_with_the_bearer_token(httpx_mock):
    httpx_mock.add_response(url=URL, method="POST", status_code=201, json={"message": "ok"})

    assert (await send(token="t0k")).delivery is Delivery.CREATED

    request = httpx_mock.get_request()
    assert request.headers["Authorization"] == "Bearer t0k"
    body = json.loads(request.content)
    assert body["report_id"] == str(REPORT.id)
    assert UsageReport.model_validate(body) == REPORT


async def test_duplicate_is_accepted_and_no_token_means_no_header(httpx_mock):
    httpx_mock.add_response(url=URL, status_code=200, json={})

    assert (await send()).delivery is Delivery.DUPLICATE
    assert "Authorization" not in httpx_mock.get_request().headers


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_permanent(httpx_mock, status):
    httpx_mock.add_response(url=URL, status_code=status, text="nope")

    with pytest.raises(CollectorRejected) as caught:
        await send()
    assert caught.value.status == status
    assert not caught.value.retryable


async def test_conflict_is_permanent(httpx_mock):
    httpx_mock.add_response(url=URL, status_code=409)

    with pytest.raises(CollectorConflict):
        await send()


@pytest.mark.parametrize(
    ("status", "header", "retry_after"),
    [(503, None, None), (500, None, None), (429, "7", 7.0), (408, None, None)],
)
async def test_server_errors_and_throttling_are_transient(httpx_mock, status, header, retry_after):
    headers = {"Retry-After": header} if header else {}
    httpx_mock.add_response(url=URL, status_code=status, headers=headers)

    with pytest.raises(CollectorUnavailable) as caught:
        await send()
    assert caught.value.retryable
    assert caught.value.retry_after == retry_after


async def test_network_errors_are_transient(httpx_mock):
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=URL)

    with pytest.raises(CollectorUnavailable):
        await send()


def test_retry_after_as_an_http_date():
    assert parse_retry_after("Fri, 01 Mar 2024 11:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Fri, 01 Mar 2024 10:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


PERIODS_BODY = {
    "message": "ok",
    "billing_periods": [
        {"start": "2024-03-19T12:34:56+00:00", "end": "2024-04-19T12:34:56+00:00"},
        {"start": "2024-02-19T12:34:56Z", "end": "2024-03-19T12:34:56Z"},
    ],
}


@pytest.mark.parametrize("status", [201, 200])
async def test_billing_periods_of_an_accepted_answer_are_parsed(httpx_mock, status):
    httpx_mock.add_response(url=URL, status_code=status, json=PERIODS_BODY)

    accepted = await send()

    assert [(p.start, p.end) for p in accepted.periods] == [
        (
            datetime(2024, 2, 19, 12, 34, 56, tzinfo=UTC),
            datetime(2024, 3, 19, 12, 34, 56, tzinfo=UTC),
        ),
        (
            datetime(2024, 3, 19, 12, 34, 56, tzinfo=UTC),
            datetime(2024, 4, 19, 12, 34, 56, tzinfo=UTC),
        ),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": "ok"}',
        b'{"billing_periods": null}',
        b'{"billing_periods": "2024-03-19"}',
        b'{"billing_periods": [{"start": "yesterday", "end": "today"}, 7, null]}',
        b'{"billing_periods": [{"start": "2024-03-19T12:00:00", "end": "2024-04-19T12:00:00"}]}',
        b'{"billing_periods": [{"start": "2024-04-19T12:00:00Z", "end": "2024-03-19T12:00:00Z"}]}',
        b"[1, 2]",
        b"not json",
        b"\xff\xfe",
        b"",
    ],
    ids=[
        "absent",
        "null",
        "not-a-list",
        "garbage-items",
        "naive-times",
        "end-before-start",
        "list-body",
        "text",
        "bytes",
        "empty",
    ],
)
async def test_garbage_billing_periods_are_ignored_and_the_report_still_accepted(httpx_mock, body):
    httpx_mock.add_response(url=URL, status_code=201, content=body)

    accepted = await send()

    assert accepted == Accepted(Delivery.CREATED, ())


async def test_good_periods_are_kept_next_to_bad_ones(httpx_mock):
    good = {"start": "2024-03-19T12:00:00Z", "end": "2024-04-19T12:00:00Z"}
    httpx_mock.add_response(
        url=URL, status_code=201, json={"billing_periods": [{"start": 1}, good, "x"]}
    )

    accepted = await send()

    assert [p.start for p in accepted.periods] == [datetime(2024, 3, 19, 12, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("status", "setting"),
    [(401, "AGENT_COLLECTOR_TOKEN"), (403, "AGENT_COLLECTOR_TOKEN"), (404, "AGENT_COLLECTOR_URL")],
)
async def test_refusals_an_operator_must_fix_name_the_setting(httpx_mock, status, setting):
    httpx_mock.add_response(url=URL, status_code=status, text="nope")

    with pytest.raises(CollectorRejected) as caught:
        await send()

    assert setting in str(caught.value)
    assert URL in str(caught.value)


async def test_a_collector_url_ending_in_the_report_path_gets_a_404_hint(httpx_mock):
    doubled = f"{URL}/api/usage/report"
    httpx_mock.add_response(url=doubled, status_code=404)

    with pytest.raises(CollectorRejected) as caught:
        async with httpx.AsyncClient() as client:
            await CollectorClient(client, URL, clock=ManualClock(NOW)).send(REPORT)

    assert "should be the collector's base, like https://collector:3100" in str(caught.value)
    assert doubled in str(caught.value)
