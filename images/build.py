"""Build the agent and collector images without a Docker engine: buildah, a local Debian base.

The same Dockerfiles users build with ``docker build`` on ``python:3.12-slim`` are built here
with ``buildah bud`` (vfs storage, chroot isolation, no daemon) through two build arguments:
``BASE``, a Debian trixie root filesystem made by ``mmdebstrap`` with Python, venv and pip, for
the build stage; ``RUNTIME_BASE``, the same root filesystem less everything that only installs
software (images/runtime_base.py), for the runtime stage. No build step reaches the network:
every dependency comes from ``wheelhouse/``, filled on the host from the pins in
``images/constraints.txt`` for the base image's Python.

Everything slow is cached under ``build/images/`` (gitignored; ``IMAGES_CACHE`` moves it): the
base tarball (remade after ``BASE_MAX_AGE_DAYS`` so security updates come in), the runtime
tarball made from it, the imported base images and buildah's own storage. ``wheelhouse/`` keeps
the wheels it already has. A fresh clone starts with neither and builds them.

    python3 images/build.py wheelhouse --python 3.12    # for `docker build` on python:3.12-slim
    python3 images/build.py images                      # base + wheelhouse + both images, sizes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if not __package__:
    # Run as `python3 images/build.py`: the `images` package is importable from the repository.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from images import runtime_base

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO_ROOT / "images" / "constraints.txt"
WHEELHOUSE = REPO_ROOT / "wheelhouse"
COMPONENTS = ("agent", "collector")

SUITE = "trixie"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Documentation, manual pages and translations are a third of a minbase system and nothing in
# the images reads them; the copyright files stay.
BASE_PATH_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
BASE_MAX_AGE_DAYS = 7
IMAGE_PREFIX = "localhost/iot-usage-metering"
# The oldest glibc of the bases the images are built on (bookworm's python:3.12-slim: 2.36).
MANYLINUX_GLIBC_MINORS = (5, 12, 17, 24, 27, 28, 31, 34, 35, 36)


class ImageBuildError(Exception):
    """A step failed; the message names the command and what it printed."""


def cache_dir() -> Path:
    return Path(os.environ.get("IMAGES_CACHE", REPO_ROOT / "build" / "images")).resolve()


def _run(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    quiet: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - our own commands, no shell
        list(command),
        cwd=REPO_ROOT,
        env=env,
        capture_output=quiet,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout or "")[-4000:] + (result.stderr or "")[-4000:]
        raise ImageBuildError(f"{' '.join(command)} exited {result.returncode}:\n{output}")
    return result


# -- buildah ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Buildah:
    """buildah with its own storage under the cache directory: vfs, chroot, no daemon."""

    root: Path

    @classmethod
    def in_cache(cls) -> Buildah:
        return cls(cache_dir() / "containers")

    def command(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    @staticmethod
    def environment() -> dict[str, str]:
        return os.environ | {"BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}

    def run(self, *args: str, timeout: float = 1800) -> str:
        return _run(self.command(*args), env=self.environment(), timeout=timeout).stdout

    def has_image(self, name: str) -> bool:
        result = subprocess.run(  # noqa: S603 - our own command, no shell
            self.command("inspect", "--type", "image", name),
            env=self.environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        return result.returncode == 0

    def inspect(self, name: str) -> dict[str, object]:
        data = json.loads(self.run("inspect", "--type", "image", name))
        assert isinstance(data, dict)
        return data

    def layer_sizes(self, name: str) -> list[int]:
        """Each layer's uncompressed size in bytes, the base's first."""
        manifest = json.loads(str(self.inspect(name)["Manifest"]))
        return [int(layer["size"]) for layer in manifest["layers"]]

    def image_size(self, name: str) -> int:
        """Uncompressed size in bytes, every layer counted (what `docker images` shows)."""
        return sum(self.layer_sizes(name))

    def prune(self, keep: set[str]) -> None:
        """Drop this project's images not in ``keep`` (older bases) and those a rebuild left
        unnamed (vfs keeps each as a full copy of its root filesystem)."""
        listing = self.run("images", "--format", "{{.Name}}:{{.Tag}}")
        stale = [
            name for name in listing.split() if name.startswith(IMAGE_PREFIX) and name not in keep
        ]
        if stale:
            self.run("rmi", "--force", *stale)
        self.run("rmi", "--prune", "--force")


# -- the base image --------------------------------------------------------------------------


def base_tarball(*, refresh: bool = False, log: bool = True) -> Path:
    """A Debian root filesystem with Python, pip and venv; cached for ``BASE_MAX_AGE_DAYS``."""
    path = cache_dir() / f"base-{SUITE}.tar"
    fresh = path.exists() and time.time() - path.stat().st_mtime < BASE_MAX_AGE_DAYS * 86400
    if fresh and not refresh:
        return path
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed: apt-get install mmdebstrap")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.tar")
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt={option}" for option in BASE_PATH_EXCLUDES),
        SUITE,
        str(partial),
    ]
    if log:
        print(f"images: {' '.join(command)}", file=sys.stderr)
    _run(command, timeout=1200)
    partial.replace(path)
    return path


def base_python(tarball: Path) -> str:
    """The base's Python as ``3.13``, read from where its ``/usr/bin/python3`` points."""
    with tarfile.open(tarball) as archive:
        for name in ("./usr/bin/python3", "usr/bin/python3"):
            try:
                member = archive.getmember(name)
            except KeyError:
                continue
            match = re.fullmatch(r"python(3\.\d+)", Path(member.linkname).name)
            if member.issym() and match:
                return match.group(1)
    raise ImageBuildError(f"{tarball}: no /usr/bin/python3 -> python3.X link")


def _stat_key(path: Path, *extra: bytes) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    for data in extra:
        digest.update(data)
    return digest.hexdigest()[:12]


def runtime_tarball(base: Path, *, log: bool = True) -> Path:
    """The runtime root filesystem of ``base``; remade when the base or the rules change."""
    rules = Path(runtime_base.__file__).read_bytes()
    path = base.with_name(f"runtime-{SUITE}-{_stat_key(base, rules)}.tar")
    if path.exists():
        return path
    for stale in base.parent.glob(f"runtime-{SUITE}-*.tar"):
        stale.unlink()
    if log:
        print(f"images: {path.name}: {base.name} less what only installs software", file=sys.stderr)
    partial = path.with_suffix(".partial")
    try:
        runtime_base.write_runtime_tarball(base, partial)
    except (runtime_base.RuntimeBaseError, OSError, tarfile.TarError) as error:
        raise ImageBuildError(f"cannot make the runtime base from {base}: {error}") from error
    partial.replace(path)
    return path


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def base_image(
    buildah: Buildah, tarball: Path, *, kind: str = "base", cmd: str = "/bin/bash"
) -> str:
    """The tarball as a local image, named after its size and mtime (re-imported when remade)."""
    name = f"{IMAGE_PREFIX}-{kind}:{SUITE}-{_stat_key(tarball)}"
    if buildah.has_image(name):
        return name
    container = buildah.run("from", "scratch").strip()
    try:
        buildah.run("add", container, str(tarball), "/")
        config = ["--cmd", cmd, "--env", "LANG=C.UTF-8", "--env", f"PATH={PATH}"]
        buildah.run("config", *config, container)
        buildah.run("commit", "--rm", container, name)
    except ImageBuildError:
        buildah.run("rm", container)
        raise
    return name


# -- the wheelhouse --------------------------------------------------------------------------


def _pins() -> dict[str, str]:
    pins = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_key(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return _canonical(name), version


def manylinux_platforms(machine: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{machine}" for minor in MANYLINUX_GLIBC_MINORS]
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def wheelhouse(pythons: Sequence[str], machine: str | None = None, *, log: bool = True) -> Path:
    """Fill ``wheelhouse/`` with a wheel of every pin, for each Python; drop unpinned wheels.

    ``pip download --no-deps`` of the exact pins: the lock is the whole closure, so nothing is
    resolved here and nothing the lock does not name arrives. Wheels only (``--only-binary``):
    the image build compiles nothing.
    """
    machine = machine or platform.machine()
    WHEELHOUSE.mkdir(exist_ok=True)
    platforms = [arg for tag in manylinux_platforms(machine) for arg in ("--platform", tag)]
    lock = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    for python in pythons:
        # Filled for these pins before: pip would only ask the index again for each of them.
        stamp = WHEELHOUSE / f".complete-{python}-{machine}"
        if stamp.exists() and stamp.read_text() == lock:
            continue
        abi = "cp" + python.replace(".", "")
        if log:
            print(f"images: wheelhouse for Python {python} on {machine}", file=sys.stderr)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                python,
                "--implementation",
                "cp",
                "--abi",
                abi,
                *platforms,
                "--dest",
                str(WHEELHOUSE),
                "--requirement",
                str(CONSTRAINTS),
            ],
            timeout=900,
        )
        stamp.write_text(lock)
    pins = _pins()

    def stale(path: Path) -> bool:
        if path.suffix == ".whl":
            name, version = _wheel_key(path.name)
            return pins.get(name) != version
        return path.name.startswith(".complete-") and path.read_text() != lock

    for path in WHEELHOUSE.iterdir():
        if stale(path):
            path.unlink()
    return WHEELHOUSE


# -- the images ------------------------------------------------------------------------------


def image_name(component: str, base: str) -> str:
    tag = re.sub(r"[^a-zA-Z0-9_.-]", "-", base.rsplit(":", 1)[-1])[:60]
    return f"{IMAGE_PREFIX}-{component}:{tag}"


def build_image(
    buildah: Buildah, component: str, base: str, runtime: str, *, log: bool = True
) -> str:
    """``buildah bud`` of ``Dockerfile.<component>``: built on ``base``, run on ``runtime``,
    offline (``--network none``)."""
    name = image_name(component, runtime)
    if log:
        print(f"images: building {name}", file=sys.stderr)
    buildah.run(
        "bud",
        "--network",
        "none",
        "--pull-never",
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"RUNTIME_BASE={runtime}",
        "--file",
        f"Dockerfile.{component}",
        "--tag",
        name,
        ".",
    )
    return name


@dataclass(frozen=True)
class Built:
    base: str
    runtime: str
    python: str
    images: dict[str, str]
    seconds: dict[str, float]


def build_all(
    components: Sequence[str] = COMPONENTS, *, refresh_base: bool = False, log: bool = True
) -> Built:
    """Base tarballs and images, wheelhouse for their Python, then each image; timed."""
    buildah = Buildah.in_cache()
    seconds: dict[str, float] = {}
    started = time.monotonic()
    tarball = base_tarball(refresh=refresh_base, log=log)
    python = base_python(tarball)
    base = base_image(buildah, tarball)
    runtime = base_image(
        buildah, runtime_tarball(tarball, log=log), kind="runtime", cmd="/usr/bin/python3"
    )
    seconds["base"] = time.monotonic() - started
    started = time.monotonic()
    wheelhouse([python], log=log)
    seconds["wheelhouse"] = time.monotonic() - started

    def build(component: str) -> tuple[str, float]:
        started = time.monotonic()
        return build_image(buildah, component, base, runtime, log=log), time.monotonic() - started

    # Side by side: each build waits on copies of the root filesystem as much as on the CPU.
    with ThreadPoolExecutor(max_workers=len(components)) as pool:
        results = dict(zip(components, pool.map(build, components), strict=True))
    images = {component: name for component, (name, _) in results.items()}
    seconds |= {component: spent for component, (_, spent) in results.items()}
    buildah.prune(keep={base, runtime, *images.values()})
    return Built(base=base, runtime=runtime, python=python, images=images, seconds=seconds)


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    houses = commands.add_parser("wheelhouse", help="fill wheelhouse/ for a Python and machine")
    houses.add_argument("--python", action="append", help="3.12 (python:3.12-slim), 3.13, ...")
    houses.add_argument("--machine", default=None, help="x86_64 or aarch64 [default: this one]")
    images = commands.add_parser("images", help="build both images with buildah, print sizes")
    images.add_argument("--refresh-base", action="store_true", help="remake the base tarball")
    args = parser.parse_args(argv)
    try:
        if args.command == "wheelhouse":
            path = wheelhouse(args.python or ["3.12"], args.machine)
            count = sum(1 for _ in path.glob("*.whl"))
            print(f"{path.relative_to(REPO_ROOT)}/: {count} wheels")
            return 0
        built = build_all(refresh_base=args.refresh_base)
    except ImageBuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    buildah = Buildah.in_cache()
    base_size = megabytes(buildah.image_size(built.base))
    print(f"{built.base} (Python {built.python}, build stage): {base_size}")
    runtime_size = buildah.image_size(built.runtime)
    print(f"{built.runtime} (runtime stage): {megabytes(runtime_size)}")
    for component, name in built.images.items():
        size = buildah.image_size(name)
        print(
            f"{name}: {megabytes(size)} ({megabytes(size - runtime_size)} on the runtime base; "
            f"built in {built.seconds[component]:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
