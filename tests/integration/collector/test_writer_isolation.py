"""A row the database refuses fails only its own request, never the others in its transaction.

Reports from several customers arrive at once through the group-commit writer, some of them
unstorable (a device count past what the column holds): every storable one is stored, every
other one is refused with a 4xx error, whatever the mix and order.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.api.app import build_services
from collector.errors import ValidationFailed
from collector.services.ingest import _to_row
from collector.settings import CollectorSettings
from tests.integration.collector.test_ingest import make_report

SERIAL = itertools.count()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    mix=st.lists(
        st.tuples(st.sampled_from(["cust_a", "cust_b", "cust_c"]), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_only_the_unstorable_reports_fail(database_url: str, mix: list[tuple[str, bool]]) -> None:
    asyncio.run(submit(database_url, mix))


async def submit(database_url: str, mix: list[tuple[str, bool]]) -> None:
    settings_ = CollectorSettings(database_url=database_url, stripe_mode="off")
    await upgrade_async(settings_.async_database_url())
    services = build_services(settings_, registry=CollectorRegistry())
    now = datetime.now(UTC)
    try:
        before = await services.store.count()
        rows = []
        for customer, storable in mix:
            report = make_report(customer_id=customer, instance_id=f"i{next(SERIAL)}")
            row = _to_row(report, legacy=False, received_at=now)
            if not storable:
                row["active_devices"] = 2**70
            rows.append(row)
        answers = await asyncio.gather(
            *(services.store.writer.insert(row) for row in rows), return_exceptions=True
        )
        for (_, storable), answer in zip(mix, answers, strict=True):
            if storable:
                assert isinstance(answer, tuple), answer
                assert answer[1], answer
            else:
                assert isinstance(answer, ValidationFailed), answer
                assert answer.status_code == 422
        assert await services.store.count() - before == sum(s for _, s in mix)
    finally:
        await services.close()
