"""Options and parameter types shared by the commands, so every command spells them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click
import orjson

from analytics._wire import is_naive_timestamp

__all__ = [
    "DEFAULT_HOST",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_DELIVERED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "HOST_ENV",
    "WRITE_KEY_ENV",
    "IsoTimestamp",
    "JsonObject",
    "host_option",
    "is_naive",
    "require_write_key",
    "timeout_option",
    "write_key_option",
]

F = TypeVar("F", bound=Callable[..., Any])

# click's ParamType is generic for type checkers from click 8.5 on; at run time it is
# subscripted only there, so the declared floor (click 8.1, tested in CI) keeps working.
if TYPE_CHECKING:
    _JsonType = click.ParamType[dict[str, Any], Any]
    _TextType = click.ParamType[str, Any]
else:
    _JsonType = _TextType = click.ParamType

# Exit codes, the same for every command (documented in the README).
EXIT_NOT_DELIVERED = 1  # something was refused or not delivered
EXIT_USAGE = 2  # click's own code for bad flags
EXIT_UNREACHABLE = 3  # the collector could not be reached at all
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

WRITE_KEY_ENV = "ANALYTICS_WRITE_KEY"
HOST_ENV = "ANALYTICS_HOST"
# `analytics serve` listens here by default: the command line never sends events off the
# machine unless it is told to (--host https://api.segment.io).
DEFAULT_HOST = "http://127.0.0.1:8088"


class JsonObject(_JsonType):
    """A flag whose value is a JSON object, such as `--properties '{"plan": "pro"}'`."""

    name = "JSON"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, Any]:
        """Parse the flag's text; fail with the JSON error and where it is."""
        if isinstance(value, dict):
            return value
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self.fail(f"invalid JSON ({exc}): {value!r}", param, ctx)
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object like '{{\"key\": 1}}', got {value!r}", param, ctx)
        return obj


class IsoTimestamp(_TextType):
    """An ISO-8601 date and time; kept as the text given, checked by the message rules."""

    name = "ISO-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """Check the text is a timestamp the collector accepts and return it unchanged."""
        try:
            is_naive_timestamp(str(value))
        except ValueError as exc:
            self.fail(f"{value!r} {exc}; e.g. 2012-10-17T18:58:57.911Z", param, ctx)
        return str(value)


def is_naive(timestamp: str) -> bool:
    """True when an ISO-8601 text carries no timezone."""
    return is_naive_timestamp(timestamp)


def _check_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL, e.g. {DEFAULT_HOST}", ctx, param
        )
    return value.rstrip("/")


def host_option(func: F) -> F:
    """`--host URL` (or ANALYTICS_HOST): where events are sent."""
    return click.option(
        "--host",
        default=DEFAULT_HOST,
        envvar=HOST_ENV,
        show_default=True,
        show_envvar=True,
        callback=_check_host,
        metavar="URL",
        help="The collector or Segment-compatible API to send to (without /v1).",
    )(func)


def write_key_option(func: F) -> F:
    """`--write-key KEY` (or ANALYTICS_WRITE_KEY); never echoed back."""
    return click.option(
        "--write-key",
        envvar=WRITE_KEY_ENV,
        show_envvar=True,
        metavar="KEY",
        help=f"The source's write key. Prefer {WRITE_KEY_ENV}: flags show up in `ps`.",
    )(func)


def require_write_key(write_key: str | None) -> str:
    """Return the write key or stop with a usage error that does not show any key."""
    if write_key is None or not write_key.strip():
        raise click.UsageError(f"no write key: pass --write-key KEY or set {WRITE_KEY_ENV}")
    return write_key.strip()


def timeout_option(default: float, what: str) -> Callable[[F], F]:
    """`--timeout SECONDS`: the bound on waiting for delivery."""

    def decorate(func: F) -> F:
        return click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=default,
            show_default=True,
            metavar="SECONDS",
            help=f"Give up {what} after this long.",
        )(func)

    return decorate
