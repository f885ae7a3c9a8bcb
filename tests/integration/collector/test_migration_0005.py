"""Reports stored before coverage was recorded read back as measured in full, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.reports import ReportStore
from collector.api.schemas import ReportOut
from tests.integration.collector.test_migration_0004 import naive

END = datetime(2026, 4, 1, 12, tzinfo=UTC)
START = END - timedelta(hours=1)


async def test_reports_from_before_0005_read_back_with_nothing_unmeasured(
    database_url: str,
) -> None:
    await upgrade_async(database_url, "0004")
    report = uuid.uuid4()
    engine = create_engine(database_url)
    store = ReportStore(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO usage_reports (report_id, customer_id, instance_id, "
                    "window_start, window_end, schema_version, legacy, metrics, partial, "
                    "missing, fingerprint, created_at) VALUES (:r, 'c1', 'acme-prod', :s, :e, "
                    "1, false, '{\"mqtt_messages\": 5}', true, '[\"storage_gb\"]', 'f', :e)"
                ),
                {
                    "r": report if not database_url.startswith("sqlite") else report.hex,
                    "s": naive(START, database_url),
                    "e": naive(END, database_url),
                },
            )
        await upgrade_async(database_url)

        stored = await store.by_report_id(report)
        assert stored is not None
        assert (stored.unmeasured, stored.coverage) == ([], {})
        shown = ReportOut.of(stored)
        assert (shown.partial, shown.missing, shown.complete) == (True, ["storage_gb"], False)
        incomplete = await store.incomplete_in_period("c1", START, END)
        assert (incomplete.reports, incomplete.by_metric) == (1, {"storage_gb": 1})
    finally:
        await store.close()
        await engine.dispose()
