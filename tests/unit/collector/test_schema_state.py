"""When the schema counts as migrated: at head, or at a revision a newer collector wrote."""

from __future__ import annotations

from collector.adapters.db.migrate import SchemaState, head_revision


def test_at_head_is_migrated() -> None:
    state = SchemaState(head_revision(), head_revision())
    assert state.migrated
    assert state.describe() == f"at head {head_revision()}"


def test_no_revision_is_not_migrated() -> None:
    state = SchemaState(None, head_revision())
    assert not state.migrated
    assert state.describe().endswith("run usage-collector db upgrade")


def test_an_older_revision_is_not_migrated() -> None:
    state = SchemaState("0001", head_revision())
    assert state.known
    assert not state.migrated


def test_a_revision_from_a_newer_collector_counts_as_migrated() -> None:
    """A rolling deploy migrates first; the old replicas must not all turn unready."""
    state = SchemaState("9999_from_the_future", head_revision())
    assert not state.known
    assert state.migrated
    assert "newer than this version" in state.describe()
