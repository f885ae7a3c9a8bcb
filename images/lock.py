"""Write images/constraints.txt: the exact versions the images install, taken from the tested venv.

The images install every runtime dependency at the version pinned in ``images/constraints.txt``,
and ``make venv`` installs the test venv with the same file as constraints, so what the suite
tests is what the images ship: a newer stripe, litestar or uvicorn cannot slip into an image
untested. This script writes that file from the environment it runs in (the test venv): it
walks the requirements of ``iot-usage-metering[agent,collector]`` as pyproject.toml states them,
evaluating markers for every Python the images are built for, and pins each distribution at its
installed version. The build backend (``setuptools``, for the image's own wheel) is not in the
venv; it keeps its pin, or takes the one given with ``--setuptools``.

It also writes each image's exact requirement list, ``images/agent.txt`` and
``images/collector.txt``: the closure of that image's extra at the same pins, less the declared
dependencies the image never imports (:data:`LEFT_OUT`, each with its reason). The Dockerfiles
install a list with ``--no-deps``, so what is left out stays out; the image tests run what each
image runs (tests/integration/images).

To move to newer versions: ``.venv/bin/pip install -U -e '.[dev]'``, run the suite, then
``.venv/bin/python images/lock.py`` and commit all three files.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO_ROOT / "images" / "constraints.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"
# python:3.12-slim for `docker build`, Debian trixie's python3 (3.13) for the buildah tests.
TARGET_PYTHONS = ("3.12", "3.13")
EXTRAS = ("agent", "collector")
IMAGES = {extra: REPO_ROOT / "images" / f"{extra}.txt" for extra in EXTRAS}

# Declared dependencies an image leaves out: nothing the image runs imports them. What only they
# need goes with them (aiohttp's yarl, multidict, ...; rich's Pygments).
LEFT_OUT: dict[str, dict[str, str]] = {
    "agent": {
        "aiohttp": "kubernetes.aio only, the asyncio client, which the image leaves out: "
        "the agent uses the synchronous client",
        "aiohttp-retry": "kubernetes.aio only",
        "dateparser": "prometheus_api_client.utils only, which PrometheusConnect never imports",
    },
    "collector": {
        "rich-click": "litestar's own command line; usage-collector is plain click",
        "rich": "litestar's own command line, and structlog's optional traceback renderer: "
        "the collector's logs format tracebacks with the standard library",
    },
}


class LockError(Exception):
    """The lock cannot be written from this environment; the message says what to do."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def line(self) -> str:
        return f"{self.name}=={self.version}"


def read_pins(path: Path = CONSTRAINTS) -> dict[str, Pin]:
    """The pins in a constraints file, by canonical name."""
    pins: dict[str, Pin] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        if specifier.operator != "==":
            raise LockError(f"{path.name}: {line!r} is not an exact pin")
        pins[canonicalize_name(requirement.name)] = Pin(requirement.name, specifier.version)
    return pins


def project_requirements(extras: Iterable[str] = EXTRAS) -> list[Requirement]:
    """The project's runtime requirements with the given extras, as pyproject.toml states them."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return requirements


def build_requirements() -> list[Requirement]:
    """What building the project's wheel needs (pyproject's build-system.requires)."""
    build = tomllib.loads(PYPROJECT.read_text())["build-system"]
    return [Requirement(r) for r in build["requires"]]


def _environments(extra: str = "") -> list[dict[str, str]]:
    return [
        {
            "python_version": version,
            "python_full_version": f"{version}.0",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "extra": extra,
        }
        for version in TARGET_PYTHONS
    ]


def _wanted(marker: Marker | None, extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    return any(
        marker.evaluate(environment)
        for extra in [*extras, ""]
        for environment in _environments(extra)
    )


def runtime_pins(
    roots: Iterable[Requirement],
    left_out: Iterable[str] = (),
    distribution: Callable[[str], metadata.Distribution] = metadata.distribution,
) -> dict[str, Pin]:
    """Every distribution ``roots`` need on a target Python, at the version installed here.

    The walk does not enter ``left_out``, so what only they need is not pinned either.
    ``distribution`` finds an installed distribution by name (another site-packages' too).
    """
    skipped = {canonicalize_name(name) for name in left_out}
    pins: dict[str, Pin] = {}
    pending: list[tuple[Requirement, str]] = [(r, "pyproject.toml") for r in roots]
    seen_extras: dict[str, set[str]] = {}
    while pending:
        requirement, wanted_by = pending.pop()
        key = canonicalize_name(requirement.name)
        if key == "iot-usage-metering" or key in skipped:
            continue
        extras = set(requirement.extras)
        if key in seen_extras and extras <= seen_extras[key]:
            continue
        try:
            dist = distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise LockError(
                f"{requirement.name} (wanted by {wanted_by}) is not installed in {sys.prefix}: "
                "install the project with `pip install -e '.[dev]'` first"
            ) from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise LockError(
                f"{requirement.name} {dist.version} is installed, but {wanted_by} wants "
                f"{requirement}: reinstall the venv"
            )
        pins[key] = Pin(dist.metadata["Name"], dist.version)
        seen_extras[key] = seen_extras.get(key, set()) | extras
        for raw in dist.requires or []:
            child = Requirement(raw)
            if _wanted(child.marker, extras):
                pending.append((child, f"{dist.metadata['Name']} {dist.version}"))
    return pins


def build_pins(existing: dict[str, Pin], setuptools: str | None) -> dict[str, Pin]:
    """The build backend's pin: ``--setuptools`` if given, else the existing one."""
    pins: dict[str, Pin] = {}
    for requirement in build_requirements():
        key = canonicalize_name(requirement.name)
        version = setuptools if key == "setuptools" and setuptools else None
        if version is None and key in existing:
            version = existing[key].version
        if version is None:
            raise LockError(f"no pin for the build requirement {requirement}: pass --setuptools")
        if not requirement.specifier.contains(version):
            raise LockError(f"{requirement.name}=={version} does not satisfy {requirement}")
        pins[key] = Pin(requirement.name, version)
    return pins


HEADER = """\
# The exact versions the container images install (Dockerfile.agent, Dockerfile.collector) and
# the test venv is installed with (`make venv`), so the images ship what the suite tested.
# Written by `.venv/bin/python images/lock.py` from the test venv; do not edit by hand.
# To upgrade: .venv/bin/pip install -U -e '.[dev]', run `make test`, then images/lock.py.
# Target Pythons: {pythons}.
"""


def image_pins(extra: str) -> dict[str, Pin]:
    """What the ``extra`` image installs: its extra's closure, less :data:`LEFT_OUT`."""
    return runtime_pins(project_requirements([extra]), LEFT_OUT[extra])


IMAGE_HEADER = """\
# What the {extra} image installs, exactly (pip --no-deps): iot-usage-metering[{extra}] and what
# it needs, at the versions of images/constraints.txt, less the declared dependencies it never
# imports. Written by `.venv/bin/python images/lock.py`; do not edit by hand.
"""


def render_image(extra: str, pins: dict[str, Pin]) -> str:
    lines = [IMAGE_HEADER.format(extra=extra).rstrip("\n"), "#", "# Left out, with what needs it:"]
    lines += [f"#   {name}: {reason}" for name, reason in LEFT_OUT[extra].items()]
    lines.append("")
    lines += [pins[key].line() for key in sorted(pins)]
    return "\n".join(lines) + "\n"


def render(runtime: dict[str, Pin], build: dict[str, Pin]) -> str:
    lines = [HEADER.format(pythons=", ".join(TARGET_PYTHONS)).rstrip("\n"), ""]
    lines.append("# runtime: iot-usage-metering[agent,collector] and what it needs")
    lines += [runtime[key].line() for key in sorted(runtime)]
    lines.append("")
    lines.append("# build backend for the project's own wheel (pyproject.toml build-system)")
    lines += [build[key].line() for key in sorted(build)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setuptools", help="pin the build backend at this version")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file would change")
    args = parser.parse_args(argv)
    try:
        existing = read_pins() if CONSTRAINTS.exists() else {}
        texts = {
            CONSTRAINTS: render(
                runtime_pins(project_requirements()), build_pins(existing, args.setuptools)
            )
        }
        texts |= {path: render_image(extra, image_pins(extra)) for extra, path in IMAGES.items()}
    except LockError as error:
        print(f"images/lock.py: {error}", file=sys.stderr)
        return 2
    if args.check:
        stale = [
            path for path, text in texts.items() if not path.exists() or path.read_text() != text
        ]
        for path in stale:
            print(
                f"{path.relative_to(REPO_ROOT)} is out of date: run images/lock.py", file=sys.stderr
            )
        return 1 if stale else 0
    for path, text in texts.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
