"""Identity from settings or the namespace; the JSON baselines move into the SQLite state file."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agent.adapters.kube import NamespaceInfo
from agent.adapters.scrape_state import (
    CounterBaseline,
    JsonBaselineStore,
    ScrapeBaselines,
    SqliteBaselineStore,
    migrate_json_baselines,
)
from agent.adapters.state_db import StateDb
from agent.errors import ConfigurationError, KubeRefused
from agent.services.identity import own_namespace, resolve_identity


def reader(annotations: dict[str, str], uid: str | None = "uid-1"):
    async def read(name: str) -> NamespaceInfo:
        return NamespaceInfo(name, uid, annotations)

    return read


async def test_settings_win_and_the_api_is_not_called():
    async def fail(name: str) -> NamespaceInfo:
        raise AssertionError("not called")

    identity = await resolve_identity("c", "i", namespace="ns", read_namespace=fail)

    assert (identity.customer_id, identity.instance_id) == ("c", "i")


async def test_annotations_then_the_namespace_uid():
    annotated = await resolve_identity(
        None,
        None,
        namespace="ns",
        read_namespace=reader(
            {"usage.billing/customer-id": "cus_1", "usage.billing/instance-id": "prod"}
        ),
    )
    by_uid = await resolve_identity(
        None, None, namespace="ns", read_namespace=reader({"usage.billing/customer-id": "cus_1"})
    )

    assert (annotated.customer_id, annotated.instance_id) == ("cus_1", "prod")
    assert (by_uid.customer_id, by_uid.instance_id) == ("cus_1", "uid-1")


async def test_missing_identity_is_a_clear_start_up_error():
    with pytest.raises(ConfigurationError, match=r"usage\.billing/customer-id"):
        await resolve_identity(None, None, namespace="ns", read_namespace=reader({}))
    with pytest.raises(ConfigurationError, match="AGENT_CUSTOMER_ID"):
        await resolve_identity(None, "i", namespace=None, read_namespace=None)

    async def forbidden(name: str) -> NamespaceInfo:
        raise KubeRefused("get namespace ns: HTTP 403", status=403)

    with pytest.raises(ConfigurationError, match=r"identity\.fromNamespace"):
        await resolve_identity(None, None, namespace="ns", read_namespace=forbidden)


def test_the_namespace_comes_from_the_setting_or_the_service_account_file(tmp_path):
    path = tmp_path / "namespace"
    path.write_text("customer-acme\n")

    assert own_namespace("set", path) == "set"
    assert own_namespace(None, path) == "customer-acme"
    assert own_namespace(None, tmp_path / "missing") is None


def test_json_baselines_are_migrated_once(tmp_path):
    baselines = ScrapeBaselines(
        datetime(2024, 1, 1, tzinfo=UTC),
        {"mqtt_messages": CounterBaseline("m_total", {(("broker", "a"),): Decimal("41.5")})},
    )
    JsonBaselineStore(tmp_path).save(baselines)
    db = StateDb.in_dir(tmp_path)

    assert migrate_json_baselines(tmp_path, db) is True
    assert migrate_json_baselines(tmp_path, db) is False
    assert SqliteBaselineStore(db).load() == baselines
    assert not (tmp_path / "scrape-baselines.json").exists()


def test_a_rolled_back_transaction_leaves_nothing(tmp_path):
    db = StateDb.in_dir(tmp_path)

    def crash_mid_transaction() -> None:
        with db.transaction():
            db.set_watermark(datetime(2024, 1, 1, tzinfo=UTC))
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash_mid_transaction()

    assert db.watermark() is None
