"""The ``serve`` and ``events`` commands (click); the ``analytics`` group adds them.

``analytics serve [--host H] [--port P] [--db PATH|URL] [--write-key KEY ...] [--log-level L]
[--log-format text|json]``
runs the collector until Ctrl-C or SIGTERM (events it acknowledged are committed).
``analytics events [--db PATH|URL] [--type T] [--user-id U] [--event E] [--since TIME] [--limit N]
[--json]`` prints what was stored, newest last; ``--json`` prints one stored message per line.

This is the only collector module that imports click. Write-key values are never printed.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import click
import orjson

from analytics._wire import parse_timestamp
from analytics.cli._escape import echo
from analytics.collector._admin import AdminAccess
from analytics.collector._db import is_url, open_store, redact
from analytics.collector._guard import DEFAULT_SERVER_LIMITS as _DEFAULTS
from analytics.collector._guard import ServerLimits
from analytics.collector._logs import FORMATS, LogSettings, configure
from analytics.collector._messages import MESSAGE_TYPES
from analytics.collector._run import run
from analytics.collector._schema import SchemaError
from analytics.collector._server import CollectorServer
from analytics.collector._store import StoreError

__all__ = ["events_command", "serve_command"]

DEFAULT_DB = "analytics.db"
_MIB = 1024 * 1024
#: The default ``--workers`` is one per CPU up to this: past a few processes SQLite's single
#: writer, not the parsing, is the limit.
MAX_DEFAULT_WORKERS = 8
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time, or a duration back from now such as ``30s``, ``10m``, ``2h``, ``1d``.

    Raises:
        ValueError: neither form.
    """
    match = _RELATIVE.match(value)
    try:
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
            return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
        return parse_timestamp(value.strip()).astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value!r} is out of the range of dates") from None
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO-8601 time nor a duration like 10m, 2h, 1d"
        ) from None


def _configure_logging(level: str, log_format: str, secrets: list[str | None], db: str) -> None:
    """The log lines of every process of this run; ``secrets`` never appear in them."""
    kept = tuple(secret for secret in secrets if secret)
    configure(LogSettings(getattr(logging, level.upper()), log_format, kept, db))


def default_workers() -> int:
    """``--workers`` when not given: one per CPU this process may use (Linux), at most
    :data:`MAX_DEFAULT_WORKERS`; 1 elsewhere (``SO_REUSEPORT`` spreads connections only on
    Linux). Two processes on two CPUs stored ≈ 20% more events/s than one (docs/benchmarks.md).
    """
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(MAX_DEFAULT_WORKERS, len(os.sched_getaffinity(0))))


def _announce(server: CollectorServer) -> None:
    echo(f"Listening on {server.url} (database: {server.store!r}); Ctrl-C stops.")
    echo(f"Live events page: {server.debugger.address(server.url)}")


def _db_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--db`` option ``serve`` and ``events`` share: a SQLite file or a PostgreSQL URL.

    A plain string (a URL is not a path); the default shown is the constant, never the value
    of ``ANALYTICS_DB``, so ``--help`` cannot show a password.
    """
    return click.option(
        "--db",
        default=DEFAULT_DB,
        show_default=True,
        envvar="ANALYTICS_DB",
        metavar="PATH|URL",
        help=help,
    )


def _db_name(db: str) -> str:
    """``db`` as it may be shown: a URL without its password."""
    return redact(db) if is_url(db) else db


def _check_admin_token(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """Refuse a short token before anything is started (the rule lives in ._admin)."""
    if value is not None:
        try:
            AdminAccess(token=value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of the collector's connection defences (._guard), documented in the
    README's Security section."""
    options = [
        click.option(
            "--max-connections",
            type=click.IntRange(1),
            default=_DEFAULTS.max_connections,
            show_default=True,
            help="Connections served at once per process (also capped by the open-file "
            "limit); past it new ones get 503 + Retry-After.",
        ),
        click.option(
            "--max-body-memory",
            type=click.IntRange(1),
            default=_DEFAULTS.max_body_bytes // _MIB,
            show_default=True,
            help="MiB of request bodies being received at once per process; past it 503.",
        ),
        click.option(
            "--read-timeout",
            type=click.FloatRange(0, min_open=True),
            default=10.0,
            show_default=True,
            help="Seconds a client has to send a whole body (else 408).",
        ),
        click.option(
            "--header-timeout",
            type=click.FloatRange(0, min_open=True),
            default=_DEFAULTS.header_timeout,
            show_default=True,
            help="Seconds a client has to send a request's headers.",
        ),
        click.option(
            "--idle-timeout",
            type=click.FloatRange(0, min_open=True),
            default=_DEFAULTS.idle_timeout,
            show_default=True,
            help="Seconds an idle keep-alive connection is kept open.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _server_options(limits: dict[str, Any]) -> dict[str, Any]:
    """``CollectorServer`` keyword arguments from the values of :func:`_limit_options`."""
    return {
        "read_timeout": limits["read_timeout"],
        "server_limits": ServerLimits(
            max_connections=limits["max_connections"],
            max_body_bytes=limits["max_body_memory"] * _MIB,
            header_timeout=limits["header_timeout"],
            idle_timeout=limits["idle_timeout"],
        ),
    }


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8088, show_default=True, type=click.IntRange(0, 65535))
@_db_option(
    "SQLite file, or postgresql://USER@HOST/DB to share one database among collectors "
    "(env ANALYTICS_DB; the password is best left to PGPASSWORD or ~/.pgpass)."
)
@click.option(
    "--write-key",
    "write_keys",
    multiple=True,
    envvar="ANALYTICS_WRITE_KEYS",
    help="Accepted write key; repeat for several (env ANALYTICS_WRITE_KEYS, space separated). "
    "Without one, any key is accepted and only 127.0.0.1 may be used.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    envvar="ANALYTICS_WORKERS",
    help="Processes serving the port and writing the database (env ANALYTICS_WORKERS). "
    f"Default: one per CPU on Linux, at most {MAX_DEFAULT_WORKERS}; 1 elsewhere.",
)
@click.option(
    "--retention-days",
    type=click.IntRange(1),
    envvar="ANALYTICS_RETENTION_DAYS",
    help="PostgreSQL only: drop the day partitions of events received more than N days ago "
    "(at start and hourly; env ANALYTICS_RETENTION_DAYS). Default: keep everything.",
)
@click.option(
    "--admin-token",
    envvar="ANALYTICS_ADMIN_TOKEN",
    callback=_check_admin_token,
    help="Token the live debugger page (and /metrics) require (env ANALYTICS_ADMIN_TOKEN). "
    "Without one they are open on 127.0.0.1 and off on any other address.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    envvar="ANALYTICS_LOG_FORMAT",
    type=click.Choice(FORMATS),
    help="text: lines for people; json: one JSON object per line (env ANALYTICS_LOG_FORMAT).",
)
@_limit_options
def serve_command(
    host: str,
    port: int,
    db: str,
    write_keys: tuple[str, ...],
    workers: int | None,
    retention_days: int | None,
    admin_token: str | None,
    log_level: str,
    log_format: str,
    **limits: Any,
) -> None:
    """Run the local collector (a Segment-compatible tracking API) until Ctrl-C."""
    _configure_logging(log_level, log_format, [*write_keys, admin_token], db)
    if workers is None:
        workers = default_workers()
    try:
        run(
            host,
            port,
            db,
            list(write_keys) or None,
            on_ready=_announce,
            workers=workers,
            retention_days=retention_days,
            admin_token=admin_token,
            **_server_options(limits),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except StoreError as exc:  # unusable database, one line (a URL's password is redacted)
        raise click.ClickException(f"cannot use the database: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None
    except RuntimeError as exc:  # a worker process could not start
        raise click.ClickException(str(exc)) from None


def _who(msg: dict[str, Any]) -> str:
    for name in ("userId", "anonymousId"):
        if msg.get(name) is not None:
            return str(msg[name])
    return "-"


def _what(msg: dict[str, Any]) -> str:
    kind = msg.get("type")
    if kind == "track":
        return str(msg.get("event"))
    if kind == "group":
        return f"group {msg.get('groupId')}"
    if kind == "alias":
        return f"previous {msg.get('previousId')}"
    return str(msg.get("name") or "")


def format_line(msg: dict[str, Any]) -> str:
    """One human-readable line for a stored message (printed through ``printable``)."""
    return "  ".join(
        (
            str(msg.get("receivedAt", "")),
            f"{msg.get('type', '')!s:<8}",
            _who(msg),
            _what(msg),
            str(msg.get("messageId", "")),
        )
    )


@click.command("events")
@_db_option("The collector's SQLite file or postgresql:// URL (env ANALYTICS_DB).")
@click.option("--type", "type_", type=click.Choice(sorted(MESSAGE_TYPES)), help="Only this type.")
@click.option("--user-id", help="Only messages with this userId.")
@click.option("--event", help="Only track messages with this event name.")
@click.option("--since", help="Received at or after: ISO-8601 time or a duration (10m, 2h, 1d).")
@click.option(
    "--limit",
    type=click.IntRange(0, 2**63 - 1, clamp=True),
    help="Only the newest N (still newest last).",
)
@click.option("--json", "as_json", is_flag=True, help="One stored message per line, as JSON.")
def events_command(
    db: str,
    type_: str | None,
    user_id: str | None,
    event: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the events the collector stored, newest last."""
    try:
        since_time = parse_since(since) if since is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    name = _db_name(db)
    try:
        store = open_store(db, readonly=True)
    except (FileNotFoundError, StoreError) as exc:
        hint = str(exc) if isinstance(exc, StoreError) else f"no collector database at {name}"
        raise click.ClickException(
            f"{hint} (start one with: analytics serve --db {name})"
        ) from None
    try:
        messages = store.iter_events(
            type=type_, user_id=user_id, event=event, since=since_time, limit=limit
        )
        for msg in messages:
            if as_json:
                click.echo(orjson.dumps(msg).decode())
            else:
                echo(format_line(msg))
    except (SchemaError, StoreError, sqlite3.Error) as exc:
        raise click.ClickException(f"cannot read {name}: {exc}") from None
