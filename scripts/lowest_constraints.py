"""Print pip constraints pinning every run-time dependency to the floor pyproject.toml declares.

``scripts/check`` installs the project with these into a second venv and runs the tests there,
so the declared range (``urllib3>=2.0.2`` ...) is the tested range: a floor that stops working
fails CI instead of a user's install. Every run-time requirement must have a ``>=`` floor.
Development tools (the ``dev`` extra's pytest, mypy, ruff, build) are not pinned.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: The extra that holds development tools, not run-time dependencies.
DEV_EXTRA = "dev"
_FLOOR = re.compile(r"^([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)")


def floors(pyproject: Path) -> dict[str, str]:
    """Every run-time dependency's name and lowest declared version."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra, extra_requirements in project["optional-dependencies"].items():
        if extra != DEV_EXTRA:
            requirements += extra_requirements
    pins: dict[str, str] = {}
    for requirement in requirements:
        if requirement.startswith(f"{project['name']}["):
            continue  # an extra naming other extras of this project
        match = _FLOOR.match(requirement)
        if match is None:
            sys.exit(f"{requirement!r} declares no >= floor, so it cannot be tested at its lowest")
        name = match.group(1).lower().replace("_", "-")
        if pins.setdefault(name, match.group(2)) != match.group(2):
            sys.exit(f"{name} has two floors: {pins[name]} and {match.group(2)}")
    return pins


def main() -> None:
    """Print ``name==floor`` lines for ``pyproject.toml`` (or the path given)."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    for name, version in sorted(floors(path).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
