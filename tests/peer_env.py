"""Real third-party clients for the compatibility tests, installed once into a cache.

Python clients go into a throw-away venv (with this project installed editable, so the
Segment suite runs against the current code), Node.js clients into a ``node_modules``; both live
under pytest's cache directory, keyed by what is installed, so a second run costs nothing and CI
(a fresh clone) installs once per run. Versions are pinned: the README's "Clients that work with
the collector" table names exactly these.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The Python clients (and what running Segment's own tests needs: pytest, a per-test timeout
#: and ``mock``).
PYTHON_PEERS = {"segment-analytics-python": "2.4.0", "rudder-sdk-python": "2.1.9"}
PYTHON_TOOLS = ["pytest>=8", "pytest-timeout>=2.3", "mock>=5"]
#: The Node.js clients.
NODE_PEERS = {"@segment/analytics-node": "3.1.0", "@rudderstack/rudder-sdk-node": "3.0.13"}
INSTALL_TIMEOUT = 900.0
_READY = ".ready"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def _run(args: list[str], cwd: Path) -> None:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")


def python_peers(cache: Path) -> Path:
    """The python of a venv holding the Python peers and this project; installed once."""
    pins = [f"{name}=={version}" for name, version in PYTHON_PEERS.items()]
    venv = cache / f"py-{_key(pins, PYTHON_TOOLS, str(ROOT), sys.version)}"
    python = venv / "bin" / "python"
    if (venv / _READY).exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], cache)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *pins, *PYTHON_TOOLS, "-e", str(ROOT)], cache)
    (venv / _READY).touch()
    return python


def node_peers(cache: Path) -> Path:
    """A directory whose ``node_modules`` holds the Node.js peers; installed once.

    Skips the calling test when node or npm is missing, except under ``CI=true``, where the
    Node.js clients must be tested.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and npm are required under CI=true for the Node.js client tests")
        pytest.skip("node or npm is not installed: the Node.js client tests need both")
    home = cache / f"node-{_key(NODE_PEERS)}"
    if (home / _READY).exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    package = {"private": True, "dependencies": NODE_PEERS}
    (home / "package.json").write_text(json.dumps(package))
    _run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"], home)
    (home / _READY).touch()
    return home
