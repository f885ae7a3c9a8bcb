"""Billing state written before the period records existed is carried into them, not lost;
batches Stripe refused as too old become rebillable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from collector.adapters.db.migrate import upgrade_async

START = datetime(2026, 4, 1, 12, tzinfo=UTC)
END = datetime(2026, 5, 1, 12, tzinfo=UTC)


def naive(moment: datetime, url: str) -> datetime | str:
    """As each database stores it: SQLite holds naive UTC text."""
    if url.startswith("sqlite"):
        return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return moment


async def test_periods_and_delivered_state_survive_the_period_model_migration(
    database_url: str,
) -> None:
    await upgrade_async(database_url, "0003")
    engine = create_async_engine(database_url)
    report = uuid.uuid4()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO stripe_customers (customer_id, stripe_customer_id, "
                    "subscription_id, subscription_status, updated_at) "
                    "VALUES ('c1', 'cus_1', 'sub_1', 'active', :t)"
                ),
                {"t": naive(START, database_url)},
            )
            await conn.execute(
                text(
                    "INSERT INTO billing_periods (customer_id, period_start, period_end) "
                    "VALUES ('c1', :s, :e)"
                ),
                {"s": naive(START, database_url), "e": naive(END, database_url)},
            )
            await conn.execute(
                text(
                    "INSERT INTO meter_state (customer_id, metric, period_start, period_end, "
                    "raw_total, billed_total, last_value, calls, updated_at) "
                    "VALUES ('c1', 'storage_gb', :s, :e, '75', 75, '75', 2, :s)"
                ),
                {"s": naive(START, database_url), "e": naive(END, database_url)},
            )
            await conn.execute(
                text(
                    "INSERT INTO usage_reports (report_id, customer_id, instance_id, "
                    "window_start, window_end, schema_version, legacy, metrics, partial, "
                    "missing, fingerprint, created_at) VALUES (:r, 'c1', 'acme-prod', :s, :e, "
                    "1, false, '{}', false, '[]', 'f', :s)"
                ),
                {
                    "r": report if not database_url.startswith("sqlite") else report.hex,
                    "s": naive(START, database_url),
                    "e": naive(END, database_url),
                },
            )
            pk = (await conn.execute(text("SELECT id FROM usage_reports"))).scalar_one()
            await conn.execute(
                text(
                    "INSERT INTO forwards (report_pk, report_id, customer_id, metric, "
                    "window_start, window_end, value, state, created_at) "
                    "VALUES (:pk, :r, 'c1', 'storage_gb', :s, :e, '75', 'pending', :s)"
                ),
                {
                    "pk": pk,
                    "r": report if not database_url.startswith("sqlite") else report.hex,
                    "s": naive(START, database_url),
                    "e": naive(END, database_url),
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO forward_batches (customer_id, metric, semantics, mode, "
                    "period_start, period_end, identifier, quantity, raw_value, event_timestamp, "
                    "newest_window_end, members, state, attempts, next_attempt_at, last_error, "
                    "created_at) VALUES ('c1', 'mqtt_messages', 'increment', 'meter_events', :s, "
                    ":e, 'id-1', 5, '5', :s, :s, 1, 'dead', 1, :s, "
                    "'Stripe 400: Timestamp must be within the past 35 calendar days.', :s)"
                ),
                {"s": naive(START, database_url), "e": naive(END, database_url)},
            )
        await upgrade_async(database_url)
        async with engine.connect() as conn:
            period = (
                await conn.execute(
                    text(
                        "SELECT id, stripe_customer_id, subscription_id FROM billing_periods "
                        "WHERE customer_id = 'c1'"
                    )
                )
            ).one()
            assert (period.stripe_customer_id, period.subscription_id) == ("cus_1", "sub_1")
            state = (
                await conn.execute(
                    text("SELECT period_id, billed_total, last_value FROM meter_state")
                )
            ).one()
            assert (state.period_id, state.billed_total, state.last_value) == (period.id, 75, "75")
            batch = (
                await conn.execute(text("SELECT period_id, dead_reason FROM forward_batches"))
            ).one()
            assert (batch.period_id, batch.dead_reason) == (period.id, "too_old")
            forward = (await conn.execute(text("SELECT instance_id, kind FROM forwards"))).one()
            assert (forward.instance_id, forward.kind) == ("acme-prod", "report")
    finally:
        await engine.dispose()
