"""docs/configuration.md lists every setting exactly as the settings classes define them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", DOCS / "settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_is_current(reference: ModuleType) -> None:
    assert (DOCS / "configuration.md").read_text() == reference.render(), (
        "docs/configuration.md is stale: run `python docs/settings_reference.py`"
    )


def test_every_setting_documents_itself(reference: ModuleType) -> None:
    for cls in reference.all_settings():
        undocumented = [name for name, field in cls.model_fields.items() if not field.description]
        assert not undocumented, f"{cls.__name__} fields without a description: {undocumented}"
