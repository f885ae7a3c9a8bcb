"""Find the external servers the integration tests run; under CI a missing one fails the run."""

from __future__ import annotations

import glob
import os
import shutil
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(component: str, hint: str) -> None:
    """Skip locally, fail under CI=true: a missing component is never a silent pass in CI."""
    message = f"{component} is not installed ({hint}); run `make test`, which installs it"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_binary(name: str, *extra_globs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        for candidate in sorted(glob.glob(pattern), reverse=True):
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def require_binary(name: str, component: str, *extra_globs: str) -> str:
    path = find_binary(name, *extra_globs)
    if path is None:
        missing(component, f"no `{name}` on PATH")
        raise AssertionError("unreachable")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
