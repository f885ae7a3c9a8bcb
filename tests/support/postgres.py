"""A throwaway PostgreSQL server on a loopback port, run as user postgres when we are root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.binaries import free_port, require_binary

PG_GLOBS = ("/usr/lib/postgresql/*/bin/{name}",)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    socket_dir: Path

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def _as_postgres(argv: list[str], runner: list[str]) -> list[str]:
    return [*runner, *argv]


def _binary(name: str) -> str:
    return require_binary(name, "PostgreSQL", *(g.format(name=name) for g in PG_GLOBS))


@contextmanager
def run_postgres() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    runner: list[str] = []
    owner = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        runner = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    password = "test-pg-password"
    pwfile = root / "pw"
    pwfile.write_text(password)
    if owner is not None:
        for path in (root, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=md5",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            runner,
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            runner,
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, "postgres", password, sockets)
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], runner),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: PostgresServer, name: str) -> str:
    """Create database ``name`` and return its asyncpg URL."""
    import asyncio

    import asyncpg

    async def create() -> None:
        for attempt in range(50):
            try:
                conn = await asyncpg.connect(
                    host=server.host,
                    port=server.port,
                    user=server.user,
                    password=server.password,
                    database="postgres",
                )
                break
            except (OSError, asyncpg.PostgresError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return server.url(name)
