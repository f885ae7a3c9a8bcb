"""After the run: the console's address and a viewer key, and whether to keep serving it.

An operator at a terminal gets the collector kept up until Ctrl-C, to open the console; a
script or CI gets the verdict and an exit at once. ``--keep``/``--no-keep`` or ``DEMO_KEEP``
(1 or 0) decide instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def should_keep(flag: bool | None) -> bool:
    """The flag, else DEMO_KEEP, else keep only at a terminal and never under CI."""
    if flag is not None:
        return flag
    chosen = os.environ.get("DEMO_KEEP", "").strip().lower()
    if chosen in TRUE | FALSE:
        return chosen in TRUE
    if os.environ.get("CI", "").strip().lower() in TRUE:
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def console_url(collector_url: str) -> str:
    return f"{collector_url}/console/"


def announce(collector_url: str, viewer_key: str) -> None:
    """Print where the console is and the key to sign in with."""
    url = console_url(collector_url)
    print(f"demo: console at {url}")
    print(f"demo: sign in with this viewer key (shown only now): {viewer_key}")
    try:
        missing = httpx.get(url, timeout=5).status_code == 404
    except httpx.HTTPError:
        missing = False
    if missing:
        print("demo: (this build of the collector serves no console yet: /console/ answers 404)")


def serve_until_interrupted(collector: subprocess.Popen[bytes]) -> None:
    """Keep the collector and the sandbox up until Ctrl-C, or until the collector exits."""
    print("demo: serving until Ctrl-C (DEMO_KEEP=0 or --no-keep exits at once)")
    try:
        while collector.poll() is None:
            time.sleep(0.5)
        print(f"demo: the collector exited with {collector.returncode}")
    except KeyboardInterrupt:
        print()
        print("demo: stopping")
