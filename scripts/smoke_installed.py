"""Smoke test of an installed wheel, run by scripts/check_package with a fresh venv's python.

``smoke_installed.py core VERSION``: only the wheel (no extra) is installed. ``import analytics``
and a client's calls pull in nothing outside the standard library but urllib3 and orjson, the
only distributions installed beside ours are those two, ``py.typed`` is shipped, and the
installed version is VERSION.

``smoke_installed.py all VERSION``: the ``all`` extra is installed too; ``analytics --version``
prints VERSION and ``analytics demo`` delivers and stores its examples.

Why a script and not a pytest test: it must run in the venv that has only the wheel, where
pytest (and the work tree) are absent on purpose.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

CORE_DEPENDENCIES = {"urllib3", "orjson"}
DISTRIBUTION = "analytics-kit"


def fail(message: str) -> None:
    """Stop with ``message`` (exit status 1)."""
    sys.exit(f"smoke test failed: {message}")


def check_core(version: str) -> None:
    """The client alone: imports, dependencies, typing marker, version."""
    before = set(sys.modules)
    import analytics  # noqa: PLC0415 -- what it imports is what is measured

    client = analytics.Client("smoke-key", send=False)
    client.track(user_id="smoke", event="Installed", properties={"ok": True})
    client.shutdown()
    new = {name.partition(".")[0] for name in set(sys.modules) - before}
    foreign = new - set(sys.stdlib_module_names) - CORE_DEPENDENCIES - {"analytics"}
    if foreign:
        fail(f"import analytics pulled in {sorted(foreign)}")
    site = Path(sysconfig.get_paths()["purelib"])
    package = Path(analytics.__file__).parent
    if package.parent != site:
        fail(f"analytics was imported from {package}, not from the venv's {site}")
    if not (package / "py.typed").is_file():
        fail("py.typed is not installed")
    if analytics.__version__ != version or metadata.version(DISTRIBUTION) != version:
        fail(f"version {analytics.__version__} / {metadata.version(DISTRIBUTION)}, not {version}")
    installed = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
    extra = installed - CORE_DEPENDENCIES - {DISTRIBUTION}
    if extra:
        fail(f"installing the wheel without extras also installed {sorted(extra)}")
    print(
        f"core: {DISTRIBUTION} {version}; new modules outside stdlib: {sorted(new - {'analytics'} - set(sys.stdlib_module_names))}"
    )


def check_all(version: str) -> None:
    """With the ``all`` extra: the command line's version and the demo."""
    script = Path(sys.executable).parent / "analytics"
    shown = subprocess.run(
        [script, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    if version not in shown.split():
        fail(f"analytics --version printed {shown!r}, not {version}")
    demo = subprocess.run(
        [script, "demo"], capture_output=True, text=True, check=False, timeout=120
    )
    if demo.returncode != 0:
        fail(f"analytics demo exited {demo.returncode}:\n{demo.stdout}\n{demo.stderr}")
    print(f"all: {shown.strip()}; analytics demo exited 0")


def main() -> None:
    """``smoke_installed.py core|all VERSION``."""
    mode, version = sys.argv[1], sys.argv[2]
    if mode == "core":
        check_core(version)
    elif mode == "all":
        check_all(version)
    else:
        fail(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
