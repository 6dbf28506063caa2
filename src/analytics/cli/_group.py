"""The click group of the `analytics` command.

Commands: `demo`, `track|identify|page|screen|group|alias`, `import`, and the collector's
`serve` and `events`. Heavier commands are imported only when used, so `analytics track`
in a cron job does not load the collector (aiohttp) or the progress bars (rich).
"""

from __future__ import annotations

import importlib

import click

from analytics._version import DISTRIBUTION, __version__
from analytics.cli._escape import printable
from analytics.cli._send import SEND_COMMANDS, make_send_command

__all__ = ["LAZY_COMMANDS", "LazyGroup", "cli"]

# name -> "module:attribute", imported on first use.
LAZY_COMMANDS = {
    "demo": "analytics.cli._demo:demo_command",
    "import": "analytics.cli._import:import_command",
    "serve": "analytics.collector._cli:serve_command",
    "events": "analytics.collector._cli:events_command",
}
COLLECTOR_COMMANDS = frozenset({"demo", "serve", "events"})


def _unavailable(name: str, error: ImportError) -> click.Command:
    """A stand-in for a command whose optional dependencies are missing."""

    def fail() -> None:
        raise click.ClickException(
            f"`analytics {name}` needs the collector, which could not be imported ({error})."
            f" Install it with: pip install '{DISTRIBUTION}[collector]'"
        )

    return click.Command(name, callback=fail, help="(unavailable: the collector is not installed)")


class LazyGroup(click.Group):
    """A group that imports some of its commands only when they are run or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; an error's message is shown with control characters escaped (it
        may quote a file name or a collector's answer)."""
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            # ``message`` is Final in click's type hints only: a plain attribute, read by show().
            setattr(exc, "message", printable(exc.message))  # noqa: B010
            raise

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing it when it is one of the lazy ones."""
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name, _, attribute = LAZY_COMMANDS[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if cmd_name not in COLLECTOR_COMMANDS:
                raise
            return _unavailable(cmd_name, exc)
        loaded = getattr(module, attribute)
        if not isinstance(loaded, click.Command):
            raise TypeError(f"{LAZY_COMMANDS[cmd_name]} is not a click command")
        self.add_command(loaded, cmd_name)
        return loaded


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="analytics")
def cli() -> None:
    """Send, import and inspect analytics events (Segment tracking API).

    Start with `analytics demo`. The write key comes from --write-key or ANALYTICS_WRITE_KEY,
    the destination from --host or ANALYTICS_HOST (default: a local `analytics serve`).
    Exit codes: 0 done, 1 something refused or not delivered, 2 bad usage,
    3 collector unreachable, 130 interrupted.
    """


for _kind in SEND_COMMANDS:
    cli.add_command(make_send_command(_kind))
