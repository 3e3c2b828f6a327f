"""A throwaway PostgreSQL 15 server for a test session (or a bench run): initdb into a fresh folder under /tmp,
pg_ctl start on a free port on 127.0.0.1, stop and remove it at the end.

initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user (runuser) in a folder it owns.
`available()` says why not when the binaries are missing (the tests then skip with that reason).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path(os.environ.get("TWIWATCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL 15 binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} user to run initdb/pg_ctl as"
        if not shutil.which("runuser"):
            return "running as root and runuser is missing"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg(args: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(_as_pg(args), cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL (postgresql+psycopg://postgres@127.0.0.1:PORT/postgres) of a fresh server."""
    why = available()
    if why:
        raise RuntimeError(why)
    root = Path(tempfile.mkdtemp(prefix="twiwatch-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
        shutil.chown(sock, PG_USER, PG_USER)
    port = _free_port()
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8"], root)
        opts = f"-k {sock} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60",
              "start"], root)
        try:
            yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
        finally:
            _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """A new empty database on the server of `admin_url`; returns its URL."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
