"""A throwaway PostgreSQL cluster for the tests and benchmarks: initdb + pg_ctl from the Debian
package `postgresql` (/usr/lib/postgresql/*/bin) into a temporary folder, on a free port.

PostgreSQL refuses to run as root, so as root the cluster folder belongs to the `postgres`
user and the server runs as that user (runuser); otherwise it runs as the current user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid


def bin_dir() -> str | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def unavailable_reason() -> str | None:
    if bin_dir() is None:
        return "PostgreSQL binaries not found (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`durable=False` (the tests) turns off fsync and synchronous commit; the benchmarks keep
    PostgreSQL's defaults so that its numbers compare with SQLite's."""

    def __init__(self, durable: bool = False):
        self.durable = durable
        self.bin = bin_dir()
        self.tmp = tempfile.mkdtemp(prefix="mosaicdb-pg-")
        os.chmod(self.tmp, 0o755)
        self.data = os.path.join(self.tmp, "data")
        self.port = _free_port()
        self.user = "mosaic"
        self._as = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args, **kw):
        return subprocess.run(
            [*self._as, *args], check=True, capture_output=True, text=True, cwd=self.tmp, **kw
        )

    def start(self) -> Cluster:
        self._run(
            f"{self.bin}/initdb",
            "-D",
            self.data,
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        opts = f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            f"{self.bin}/pg_ctl",
            "-D",
            self.data,
            "-o",
            opts,
            "-l",
            os.path.join(self.tmp, "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        for _ in range(20):
            try:
                shutil.rmtree(self.tmp)
                break
            except OSError:
                time.sleep(0.1)
