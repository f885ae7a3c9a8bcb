"""Fixtures for the console tests: the sandbox scenario and a headless Debian chromium.

The browser is Debian's ``chromium`` (``.ci/install-servers`` installs it), driven by Playwright
with ``executable_path``; Playwright never downloads a browser here. Under ``CI=true`` a missing
chromium or Playwright fails the run. Each test saves screenshots under
``build/console-screenshots/``.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.console.scenario import Scene, console_scene
from tests.support.binaries import missing, require_binary
from tests.support.stripe_sandbox import sandbox_clock, stripe_sandbox

__all__ = ["sandbox_clock", "stripe_sandbox"]

SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "console-screenshots"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@contextmanager
def scene_in_thread(tmp: Path) -> Iterator[Scene]:
    """``console_scene`` set up and torn down in a thread of its own: it runs event loops of
    its own (migrations, Stripe setup), which Playwright's loop in this thread would refuse."""
    ready: queue.Queue[Scene | BaseException] = queue.Queue()
    done = threading.Event()

    def hold() -> None:
        try:
            with console_scene(tmp) as running:
                ready.put(running)
                done.wait()
        except BaseException as exc:
            ready.put(exc)

    thread = threading.Thread(target=hold, name="console-scene")
    thread.start()
    made = ready.get()
    try:
        if isinstance(made, BaseException):
            raise made
        yield made
    finally:
        done.set()
        thread.join()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """One scenario for the tests of a module that only read."""
    with scene_in_thread(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture
def fresh_scene(tmp_path: Path) -> Iterator[Scene]:
    """A scenario of its own, for a test that changes it (a retry)."""
    with scene_in_thread(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = require_binary("chromium", "Debian chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright", "pip install playwright, from the test extra")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def sign_in(page: Any, scene: Scene, key: str, start: str = "/console/") -> None:
    """Open ``start``, get sent to the sign-in form, enter the key, land back on ``start``."""
    page.goto(f"{scene.url}{start}")
    assert re.search(r"/console/sign-in\?next=", page.url), page.url
    page.fill("#key", scene.keys[key])
    page.click("button[type=submit]")
    page.wait_for_url(f"{scene.url}{start}")
