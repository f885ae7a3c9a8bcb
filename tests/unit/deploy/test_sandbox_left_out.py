"""`usage-collector stripe sandbox` in an image whose wheel left the sandbox out."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from collector.cli import main


def test_sandbox_command_says_the_sandbox_is_not_installed_in_this_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "collector.stripe_sandbox", None)

    result = CliRunner().invoke(main, ["stripe", "sandbox"])

    assert result.exit_code == 1
    assert result.output.startswith(
        "usage-collector: the Stripe sandbox is not installed in this image"
    )
    assert "Traceback" not in result.output
