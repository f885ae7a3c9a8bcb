"""images/runtime_base.py: the runtime root filesystem keeps what runs Python, not what installs.

The real base is checked where it is built and run (tests/integration/images); here a small
root filesystem with a dpkg database shows each rule.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from images.runtime_base import (
    RuntimeBaseError,
    parse_status,
    runtime_packages,
    write_runtime_tarball,
)

STATUS = """\
Package: python3
Status: install ok installed
Depends: python3.13 (>= 3.13.5-1~), libpython3-stdlib (= 3.13.5-1)
Architecture: amd64

Package: python3.13
Status: install ok installed
Pre-Depends: libc6 (>= 2.38)
Depends: python3-minimal:any, mime-support | media-types
Architecture: amd64

Package: python3-minimal
Status: install ok installed
Depends: dpkg (>= 1.13.20)
Architecture: amd64

Package: libpython3-stdlib
Status: install ok installed
Depends: tzdata
Architecture: amd64

Package: media-types
Status: install ok installed
Architecture: all

Package: tzdata
Status: install ok installed
Depends: debconf (>= 0.5) | debconf-2.0
Architecture: all

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: amd64

Package: ca-certificates
Status: install ok installed
Depends: openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0
Architecture: all

Package: openssl
Status: install ok installed
Architecture: amd64

Package: debconf
Status: install ok installed
Provides: debconf-2.0
Depends: perl-base (>= 5.20.1-3~)
Architecture: all

Package: perl-base
Status: install ok installed
Essential: yes
Architecture: amd64

Package: dpkg
Status: install ok installed
Essential: yes
Depends: tar
Architecture: amd64

Package: tar
Status: install ok installed
Essential: yes
Architecture: amd64

Package: libstdc++6
Status: install ok installed
Architecture: amd64

Package: base-files
Status: install ok installed
Depends: awk
Architecture: amd64

Package: mawk
Status: install ok installed
Provides: awk
Architecture: amd64

Package: python3-pip
Status: install ok installed
Depends: python3:any
Architecture: all

Package: removed-long-ago
Status: deinstall ok config-files
Architecture: all
"""

RUNTIME = {
    "python3",
    "python3.13",
    "python3-minimal",
    "libpython3-stdlib",
    "media-types",
    "tzdata",
    "libc6",
    "ca-certificates",
    "openssl",
    "libstdc++6",
    "base-files",
}

LISTS = {
    "base-files": ["/.", "/etc", "/etc/os-release", "/usr", "/usr/bin", "/usr/lib"],
    "python3.13": ["/usr/bin/python3.13", "/usr/lib/python3.13", "/usr/lib/python3.13/os.py"],
    "python3-minimal": ["/usr/bin/python3"],
    "libc6:amd64": ["/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu/gconv/UTF-16.so"],
    "dpkg": ["/etc/alternatives", "/usr/bin/dpkg", "/var/lib/dpkg"],
    "perl-base": ["/usr/bin/perl"],
    "mawk": ["/usr/bin/mawk"],
    "python3-pip": [
        "/usr/lib/python3/dist-packages/pip",
        "/usr/lib/python3/dist-packages/pip/x.py",
    ],
}


def test_status_lists_installed_packages_with_their_dependencies_and_virtual_names() -> None:
    packages = parse_status(STATUS)

    assert "removed-long-ago" not in packages
    assert packages["python3.13"].depends == (
        ("libc6",),
        ("python3-minimal",),
        ("mime-support", "media-types"),
    )
    assert packages["debconf"].provides == ("debconf-2.0",)


def test_runtime_is_the_closure_of_python_and_the_certificates_without_configure_tools() -> None:
    kept = runtime_packages(parse_status(STATUS))

    # dpkg (python3-minimal), debconf and so perl (tzdata, ca-certificates) and awk (base-files)
    # only configure packages; pip is nobody's dependency.
    assert kept == RUNTIME


def test_a_root_missing_from_the_base_is_an_error() -> None:
    with pytest.raises(RuntimeBaseError, match="python3 is not installed"):
        runtime_packages(parse_status(STATUS.replace("Package: python3\n", "Package: py3\n")))


def _base(path: Path) -> Path:
    files: dict[str, str] = {
        "etc/os-release": "ID=debian\n",
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
        "etc/group": "root:x:0:\n",
        "usr/bin/python3.13": "ELF",
        "usr/lib/python3.13/os.py": "",
        "usr/lib/python3.13/__pycache__/os.cpython-313.pyc": "",
        "usr/lib/x86_64-linux-gnu/gconv/UTF-16.so": "ELF",
        "usr/bin/dpkg": "ELF",
        "usr/bin/perl": "ELF",
        "usr/bin/mawk": "ELF",
        "usr/lib/python3/dist-packages/pip/x.py": "",
        "usr/lib/python3/dist-packages/pip/__pycache__/x.cpython-313.pyc": "",
        "var/lib/dpkg/status": STATUS,
        "var/lib/dpkg/info/python3.13.postinst": "#!/bin/sh\n",
        "var/lib/dpkg/diversions": "",
    }
    for package, paths in LISTS.items():
        files[f"var/lib/dpkg/info/{package}.list"] = "\n".join(paths) + "\n"
        files[f"var/lib/dpkg/info/{package}.md5sums"] = ""
    links = {
        "bin": "usr/bin",
        "lib": "usr/lib",
        "usr/bin/python3": "python3.13",
        "etc/alternatives/awk": "/usr/bin/mawk",
        "usr/bin/awk": "/etc/alternatives/awk",
    }
    directories = {str(Path(name).parent) for name in [*files, *links]} - {"."}
    with tarfile.open(path, "w") as archive:
        archive.addfile(_entry(".", tarfile.DIRTYPE))
        for name in sorted({str(p) for d in directories for p in [Path(d), *Path(d).parents]}):
            if name != ".":
                archive.addfile(_entry(f"./{name}", tarfile.DIRTYPE))
        for name, target in links.items():
            link = _entry(f"./{name}", tarfile.SYMTYPE)
            link.linkname = target
            archive.addfile(link)
        for name, text in files.items():
            entry = _entry(f"./{name}", tarfile.REGTYPE)
            entry.size = len(text.encode())
            archive.addfile(entry, io.BytesIO(text.encode()))
    return path


def _entry(name: str, kind: bytes) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = kind
    entry.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return entry


def _read(path: Path) -> dict[str, str]:
    with tarfile.open(path) as archive:
        return {
            member.name.removeprefix("./"): (
                archive.extractfile(member).read().decode()  # type: ignore[union-attr]
                if member.isfile()
                else member.linkname
            )
            for member in archive
        }


def test_runtime_tarball_keeps_what_runs_python_and_drops_what_installs(tmp_path: Path) -> None:
    result = write_runtime_tarball(_base(tmp_path / "base.tar"), tmp_path / "runtime.tar")
    members = _read(tmp_path / "runtime.tar")

    assert result.kept == RUNTIME
    assert {"dpkg", "perl-base", "debconf", "mawk", "python3-pip", "tar"} <= result.dropped
    # The interpreter, its library and the byte code made when it was configured stay.
    assert {"usr/bin/python3.13", "usr/lib/python3.13/os.py", "etc/os-release"} <= members.keys()
    assert "usr/lib/python3.13/__pycache__/os.cpython-313.pyc" in members
    assert members["usr/bin/python3"] == "python3.13"
    # The tools that install and configure software go, with what their scripts made.
    for gone in ("usr/bin/dpkg", "usr/bin/perl", "usr/bin/mawk", "etc/alternatives/awk"):
        assert gone not in members
    assert not [name for name in members if name.startswith("usr/lib/python3/dist-packages/")]
    # An alternative pointing at a left-out tool would dangle: it goes too.
    assert "usr/bin/awk" not in members
    assert "usr/lib/x86_64-linux-gnu/gconv/UTF-16.so" not in members


def test_runtime_dpkg_database_names_only_the_kept_packages(tmp_path: Path) -> None:
    write_runtime_tarball(_base(tmp_path / "base.tar"), tmp_path / "runtime.tar")
    members = _read(tmp_path / "runtime.tar")

    assert set(parse_status(members["var/lib/dpkg/status"])) == RUNTIME
    info = {name for name in members if name.startswith("var/lib/dpkg/info/")}
    assert info == {
        "var/lib/dpkg/info/python3.13.list",
        "var/lib/dpkg/info/python3.13.md5sums",
        "var/lib/dpkg/info/python3-minimal.list",
        "var/lib/dpkg/info/python3-minimal.md5sums",
        "var/lib/dpkg/info/base-files.list",
        "var/lib/dpkg/info/base-files.md5sums",
        "var/lib/dpkg/info/libc6:amd64.list",
        "var/lib/dpkg/info/libc6:amd64.md5sums",
    }
    assert "var/lib/dpkg/diversions" not in members


def test_runtime_users_gain_nonroot_65532(tmp_path: Path) -> None:
    write_runtime_tarball(_base(tmp_path / "base.tar"), tmp_path / "runtime.tar")
    members = _read(tmp_path / "runtime.tar")

    assert members["etc/passwd"].splitlines() == [
        "root:x:0:0:root:/root:/bin/bash",
        "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin",
    ]
    assert members["etc/group"].splitlines() == ["root:x:0:", "nonroot:x:65532:"]
