"""The runtime base: the build base's root filesystem less everything that only installs software.

The images' runtime stage runs one venv, made in the build stage on the build base's Python. It
never installs a package, runs a maintainer script or starts a shell, so it needs that Python
with its shared libraries, the CA certificates and nothing else. This module writes such a root
filesystem from the build base's tarball (``images/build.py`` imports the result as the
``RUNTIME_BASE`` image): the same packages at the same versions, so the venv finds exactly the
interpreter it was made with.

What stays is the dependency closure of :data:`RUNTIME_ROOTS` in the base's dpkg database,
with the Depends that only configure packages (:data:`CONFIGURE_ONLY`: dpkg, debconf, perl,
awk) cut. Every other package goes: apt, dpkg, perl, the shells and core utilities, pip and the
wheels ``venv`` bundles. A file no package owns (``/etc/passwd``, the CA bundle, the standard
library's byte code, caches) follows the nearest directory a package owns; a symbolic link
left pointing at a dropped file (an alternative) goes. The dpkg status file and file lists keep
the kept packages only, so scanners see what the image holds. /etc/passwd gains ``nonroot``
(65532), the user the images run as.
"""

from __future__ import annotations

import fnmatch
import io
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

# Python (the interpreter, its standard library and the libraries it links), the CA bundle,
# the C++ runtime (greenlet, SQLAlchemy's asyncio bridge, is C++) and the files that say what
# system this is (/etc/os-release). /etc/passwd and /etc/group belong to no package: they stay.
RUNTIME_ROOTS = ("python3", "ca-certificates", "libstdc++6", "base-files")
# Dependencies of maintainer scripts only (py3compile's dpkg triggers, the debconf questions
# of ca-certificates and tzdata, base-files' awk), never of running Python.
CONFIGURE_ONLY = frozenset({"dpkg", "debconf", "perl-base", "mawk"})
# iconv's charset modules (8 MB): Python's codecs are its own and never call iconv.
RUNTIME_PATH_EXCLUDES = ("usr/lib/*-linux-gnu/gconv/*",)
# The user the images run as, named as in distroless images.
NONROOT_USER = "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n"
NONROOT_GROUP = "nonroot:x:65532:\n"

DPKG = PurePosixPath("var/lib/dpkg")
STATUS = DPKG / "status"
INFO = DPKG / "info"
# /bin, /lib, ... are symlinks into /usr (merged /usr); a package may still list either path.
USRMERGE = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


class RuntimeBaseError(Exception):
    """The build base cannot be reduced: its dpkg database lacks what the runtime needs."""


@dataclass(frozen=True)
class Package:
    """One installed package from the dpkg status file."""

    name: str
    stanza: str
    depends: tuple[tuple[str, ...], ...]
    provides: tuple[str, ...]


def _names(field: str) -> list[tuple[str, ...]]:
    """``a (>= 1) | b:any, c`` as ``[("a", "b"), ("c",)]``."""
    groups = []
    for group in field.split(","):
        alternatives = tuple(
            re.split(r"[\s:(]", alternative.strip(), maxsplit=1)[0]
            for alternative in group.split("|")
            if alternative.strip()
        )
        if alternatives:
            groups.append(alternatives)
    return groups


def parse_status(text: str) -> dict[str, Package]:
    """The installed packages of a dpkg status file, by name."""
    packages: dict[str, Package] = {}
    for stanza in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "installed" not in fields.get("Status", "").split():
            continue
        depends = _names(fields.get("Pre-Depends", "")) + _names(fields.get("Depends", ""))
        provides = [name for (name, *_) in _names(fields.get("Provides", ""))]
        packages[fields["Package"]] = Package(
            fields["Package"], stanza.strip() + "\n", tuple(depends), tuple(provides)
        )
    return packages


def runtime_packages(
    packages: dict[str, Package],
    roots: Iterable[str] = RUNTIME_ROOTS,
    cut: frozenset[str] = CONFIGURE_ONLY,
) -> set[str]:
    """The dependency closure of ``roots``, not entering ``cut``."""
    providers: dict[str, str] = {}
    for package in packages.values():
        for virtual in package.provides:
            providers.setdefault(virtual, package.name)
    kept: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in kept or name in cut:
            continue
        if name not in packages:
            raise RuntimeBaseError(f"{name} is not installed in the build base")
        kept.add(name)
        for alternatives in packages[name].depends:
            installed = [
                resolved
                for alternative in alternatives
                if (
                    resolved := alternative
                    if alternative in packages
                    else providers.get(alternative)
                )
            ]
            if not installed:
                raise RuntimeBaseError(
                    f"{name} depends on {' | '.join(alternatives)}: none installed"
                )
            pending.append(installed[0])
    return kept


def _normal(path: str) -> str:
    """A tar member or dpkg list path as ``usr/bin/x``: no leading ``./`` or ``/``, /usr merged."""
    parts = PurePosixPath(path.removeprefix("./").lstrip("/")).parts
    if parts and parts[0] in USRMERGE:
        parts = (*PurePosixPath(USRMERGE[parts[0]]).parts, *parts[1:])
    return str(PurePosixPath(*parts)) if parts else "."


def _info_package(name: str) -> str:
    """``libc6:amd64.list`` -> ``libc6``."""
    return name.rsplit(".", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class Ownership:
    """Which packages own each path of the base, from dpkg's ``info/*.list`` files."""

    owners: dict[str, set[str]]

    @classmethod
    def read(cls, lists: dict[str, str]) -> Ownership:
        owners: dict[str, set[str]] = {}
        for package, text in lists.items():
            for line in text.splitlines():
                if line.strip():
                    owners.setdefault(_normal(line.strip()), set()).add(package)
        return cls(owners)

    def keeps(self, path: str, kept: set[str]) -> bool:
        """Whether ``path`` stays: owned by a kept package, or under a directory one owns."""
        candidate = PurePosixPath(path)
        while True:
            owners = self.owners.get(str(candidate))
            if owners:
                return bool(owners & kept)
            if candidate == candidate.parent:
                return True
            candidate = candidate.parent


@dataclass(frozen=True)
class RuntimeBase:
    """What :func:`write_runtime_tarball` kept and left out."""

    kept: frozenset[str]
    dropped: frozenset[str]


def _read_database(archive: tarfile.TarFile) -> tuple[dict[str, Package], dict[str, str]]:
    status = ""
    lists: dict[str, str] = {}
    for member in archive:
        path = PurePosixPath(_normal(member.name))
        if not member.isfile() or path.parent not in (DPKG, INFO):
            continue
        if path == STATUS or (path.parent == INFO and path.suffix == ".list"):
            extracted = archive.extractfile(member)
            assert extracted is not None
            text = extracted.read().decode()
            if path == STATUS:
                status = text
            else:
                lists[_info_package(path.name)] = text
    if not status:
        raise RuntimeBaseError("the build base has no /var/lib/dpkg/status")
    return parse_status(status), lists


def _keeps_dpkg_path(path: PurePosixPath, kept: set[str]) -> bool:
    """Of dpkg's database, what scanners read: the status file and the kept packages' lists."""
    if path in (DPKG, INFO, STATUS):
        return True
    return (
        path.parent == INFO
        and path.suffix in (".list", ".md5sums")
        and _info_package(path.name) in kept
    )


def _keeps(path: PurePosixPath, kept: set[str], ownership: Ownership) -> bool:
    if path.parts[:3] == DPKG.parts:
        return _keeps_dpkg_path(path, kept)
    if any(fnmatch.fnmatch(str(path), pattern) for pattern in RUNTIME_PATH_EXCLUDES):
        return False
    return ownership.keeps(str(path), kept)


def _target(link: PurePosixPath, target: str) -> PurePosixPath:
    """Where a symbolic link points, as a normal path in the same tree."""
    joined = PurePosixPath(target) if target.startswith("/") else link.parent / target
    parts: list[str] = []
    for part in joined.parts:
        if part == "..":
            parts = parts[:-1]
        elif part not in ("/", "."):
            parts.append(part)
    return PurePosixPath(_normal("/".join(parts) or "."))


def _dangling(
    paths: dict[PurePosixPath, tarfile.TarInfo], kept: set[PurePosixPath]
) -> set[PurePosixPath]:
    """Kept symbolic links whose target was in the base but is left out (alternatives)."""
    dangling: set[PurePosixPath] = set()
    for path in kept:
        member, hops = paths[path], 0
        while member.issym() and hops < 40:
            target = _target(PurePosixPath(_normal(member.name)), member.linkname)
            if target not in paths:
                break
            if target not in kept:
                dangling.add(path)
                break
            member, hops = paths[target], hops + 1
    return dangling


def _with_text(member: tarfile.TarInfo, text: str) -> tuple[tarfile.TarInfo, io.BytesIO]:
    data = text.encode()
    copy = tarfile.TarInfo(member.name)
    for attribute in ("mode", "uid", "gid", "uname", "gname", "mtime"):
        setattr(copy, attribute, getattr(member, attribute))
    copy.size = len(data)
    return copy, io.BytesIO(data)


def _members(
    archive: tarfile.TarFile, packages: dict[str, Package], kept: set[str], ownership: Ownership
) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    paths = {PurePosixPath(_normal(member.name)): member for member in archive.getmembers()}
    keep = {path for path in paths if _keeps(path, kept, ownership)}
    keep -= _dangling(paths, keep)
    for member in archive.getmembers():
        path = PurePosixPath(_normal(member.name))
        if path not in keep:
            continue
        if path == STATUS:
            yield _with_text(member, "\n".join(packages[name].stanza for name in sorted(kept)))
        elif member.isfile() and str(path) in ("etc/passwd", "etc/group"):
            extracted = archive.extractfile(member)
            assert extracted is not None
            entry = NONROOT_USER if path.name == "passwd" else NONROOT_GROUP
            yield _with_text(member, extracted.read().decode() + entry)
        else:
            yield member, archive.extractfile(member) if member.isfile() else None


def write_runtime_tarball(base: Path, destination: Path) -> RuntimeBase:
    """Write the runtime root filesystem of the build base ``base`` to ``destination``."""
    with tarfile.open(base) as archive:
        packages, lists = _read_database(archive)
    kept = runtime_packages(packages)
    ownership = Ownership.read(lists)
    with (
        tarfile.open(base) as archive,
        tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member, data in _members(archive, packages, kept, ownership):
            out.addfile(member, data)
    return RuntimeBase(frozenset(kept), frozenset(packages) - kept)
