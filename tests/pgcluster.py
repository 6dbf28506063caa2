"""A throw-away PostgreSQL cluster for the tests (and the benchmark): initdb + pg_ctl.

The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port (and a Unix
socket in its own directory), trusts local connections, and is removed when stopped. Run as
root (the tests in CI), the server processes run as the ``postgres`` OS user, since PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Cluster", "find_bindir", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bindir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: ``pg_config --bindir``, else the PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
        )
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


class Cluster:
    """One cluster: ``start()`` (initdb the first time), ``stop()``, ``remove()``."""

    def __init__(self, bindir: Path, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="analytics-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.settings = {"fsync": "off", "full_page_writes": "off", **(settings or {})}
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database as the ``postgres`` user over TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd="/", check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed ({out.returncode}): {out.stderr.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.root / "server.log"),
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.root} {options}",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back sessions, clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def backend_pids(self) -> list[int]:
        """Pids of the server's processes (children of the postmaster), for CPU accounting."""
        parent = self.postmaster_pid()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    pids.append(int(entry.name))
        return [parent, *pids]

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_accepting(port: int, timeout: float = 30.0) -> bool:
    """True once 127.0.0.1:port accepts TCP connections (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
    return False
