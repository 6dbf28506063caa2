"""The `analytics` command line (also `python -m analytics`).

`main()` is the console script. The command line needs the ``cli`` extra (click, rich); when
it is missing, `main()` says how to install it instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from analytics._version import DISTRIBUTION

if TYPE_CHECKING:
    import click

__all__ = ["cli", "main"]

INSTALL_HINT = (
    "analytics: the command line needs the 'cli' extra ({missing} is not installed):"
    f" pip install '{DISTRIBUTION}[cli]'"
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (the `analytics` script's entry point)."""
    try:
        from analytics.cli._group import cli  # noqa: PLC0415 -- needs the optional extra
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.exit(INSTALL_HINT.format(missing=exc.name))
    cli.main(args=None if argv is None else list(argv), prog_name="analytics")


def __getattr__(name: str) -> Any:
    """`analytics.cli.cli`, the click group, imported on first use."""
    if name == "cli":
        from analytics.cli._group import cli  # noqa: PLC0415 -- needs the optional extra

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    cli: click.Group
