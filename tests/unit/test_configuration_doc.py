"""docs/configuration.md lists every setting exactly as the settings classes define them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", DOCS / "settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "configuration.md").read_text() == module.render(), (
        "docs/configuration.md is stale: run `python docs/settings_reference.py`"
    )


def test_every_setting_documents_itself() -> None:
    spec = importlib.util.spec_from_file_location(
        "settings_reference", DOCS / "settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for cls in module.all_settings():
        undocumented = [name for name, field in cls.model_fields.items() if not field.description]
        assert not undocumented, f"{cls.__name__} fields without a description: {undocumented}"
