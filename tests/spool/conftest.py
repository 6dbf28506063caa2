"""Fixtures for the spool tests: a spool in a temporary directory, small tmpfs mounts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from analytics._spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    """A fresh spool file, closed after the test."""
    s = Spool(tmp_path / "spool.db")
    yield s
    s.close()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount small tmpfs filesystems (root only); each is unmounted after the test.

    ``tmpfs(size="2m")`` returns the mount point; ``tmpfs.remount_ro(path)`` makes it read-only.
    Skips the test when mounting is not permitted (not root, or no CAP_SYS_ADMIN).
    """
    mounted: list[Path] = []

    def mount(size: str = "2m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point))
        if done.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        done = _run("umount", str(point))
        if done.returncode != 0:
            _run("umount", "-l", str(point))


def remount_read_only(point: Path) -> None:
    """Make a tmpfs made by the ``tmpfs`` fixture read-only (as root that binds even root)."""
    done = _run("mount", "-o", "remount,ro", str(point))
    assert done.returncode == 0, done.stderr
