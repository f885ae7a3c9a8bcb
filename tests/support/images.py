"""The built images, run with buildah: containers, their commands, and what they wrote.

``buildah run`` with chroot isolation is the runtime here. It cannot make the root filesystem
read-only, so :class:`Container` does what the chart's ``readOnlyRootFilesystem`` would catch
instead: it snapshots the container's root (through ``buildah mount``) before and after the
commands run, and :meth:`Container.written` names every path they changed. The tests assert
those are all under the image's declared writable paths (the chart's mounts).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from images.build import Buildah
from tests.support.binaries import find_binary, missing

# buildah itself touches these on every run (its /run/.containerenv, bind-mount targets).
RUNTIME_PATHS = ("/run", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev", "/proc", "/sys")


def require_image_tools() -> None:
    """buildah and mmdebstrap, as root: skip locally without them, fail under CI=true."""
    for tool in ("buildah", "mmdebstrap"):
        if find_binary(tool) is None:
            missing(tool, f"no `{tool}` on PATH; `make image-tools` installs it with apt")
    if os.geteuid() != 0:
        missing("root for buildah", "the image tests run buildah with vfs storage as root")


Snapshot = dict[str, tuple[int, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root`` with its size, mtime and mode."""
    entries: Snapshot = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(directory) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            key = "/" + str(path.relative_to(root))
            entries[key] = (info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return entries


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths added, removed or modified between two snapshots, the runtime's own left out."""
    paths = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    return sorted(path for path in paths if not under(path, RUNTIME_PATHS))


def under(path: str, roots: Sequence[str]) -> bool:
    posix = PurePosixPath(path)
    return any(
        posix == PurePosixPath(root) or PurePosixPath(root) in posix.parents for root in roots
    )


@dataclass
class Container:
    """A working container of one image; commands run as the image's user unless told."""

    buildah: Buildah
    image: str
    name: str
    root: Path
    before: Snapshot

    @classmethod
    @contextmanager
    def of(cls, buildah: Buildah, image: str) -> Iterator[Container]:
        name = buildah.run("from", "--pull-never", image).strip()
        try:
            root = Path(buildah.run("mount", name).strip())
            yield cls(buildah, image, name, root, snapshot(root))
        finally:
            buildah.run("rm", name)

    def command(
        self, args: Sequence[str], *, env: dict[str, str] | None = None, user: str | None = None
    ) -> list[str]:
        options = ["--network", "host"]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        if user is not None:
            options += ["--user", user]
        return self.buildah.command("run", *options, self.name, "--", *args)

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the container; its exit code, stdout and stderr (not checked)."""
        return subprocess.run(
            self.command(args, env=env, user=user),
            env=self.buildah.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def check(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Run a command that must succeed; its stdout."""
        result = self.run(*args, env=env, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode} in {self.image}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def python(self, code: str) -> str:
        """Run Python code with the image's venv interpreter; its stdout."""
        return self.check("/opt/venv/bin/python", "-c", code)

    @contextmanager
    def serving(self, *args: str, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
        """A long-running command in the container, stopped with SIGTERM (then SIGKILL)."""
        with log.open("w") as output:
            process = subprocess.Popen(
                self.command(args, env=env),
                env=self.buildah.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)

    def written(self) -> list[str]:
        """Every path in the root filesystem the commands so far changed."""
        return changed(self.before, snapshot(self.root))


def image_config(buildah: Buildah, image: str) -> dict[str, Any]:
    """The image's OCI config: User, Entrypoint, Cmd, WorkingDir, Env, ..."""
    config = buildah.inspect(image)["OCIv1"]["config"]  # type: ignore[index]
    assert isinstance(config, dict)
    return config


def wait_for_http(url: str, *, limit: float = 60.0, log: Path | None = None) -> httpx.Response:
    """GET ``url`` until it answers 200 (bounded), or fail with the server's log."""
    deadline = time.monotonic() + limit
    last: str = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return response
                last = f"{response.status_code} {response.text}"
            except httpx.TransportError as error:
                last = repr(error)
            time.sleep(0.2)
    text = log.read_text() if log is not None and log.exists() else ""
    raise AssertionError(f"{url} did not answer 200 within {limit} s ({last}):\n{text}")
