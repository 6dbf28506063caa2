"""`analytics demo`: the whole system in one command, with the seed's own examples.

It starts an embedded collector on 127.0.0.1 (SQLite in a new temporary folder unless --db),
runs the README examples through the real client over real HTTP (`init`, `identify` with
traits, `track` with properties, a historical `track`, and the "Server Logs Example"),
flushes, checks by messageId that every event was stored, and prints what was stored.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import click

import analytics
from analytics.cli._escape import echo
from analytics.cli._options import EXIT_NOT_DELIVERED, timeout_option
from analytics.cli._table import event_rows, print_table
from analytics.collector import CollectorServer, StoreError

__all__ = ["SERVER_LOG", "demo_command", "run_examples"]

DEMO_WRITE_KEY = "demo-write-key"

# The seed's "Server Logs Example" line, and two more in other timezones.
SERVER_LOG = (
    "2012-10-17T18:58:57.911Z ilya@segment.io /purchased/tshirt",
    "2012-10-17T20:03:12.250+02:00 calvin@segment.io /purchased/tshirt",
    "2012-10-17T14:15:00.000-04:00 peter@segment.io /purchased/tshirt",
)

Sent = list[tuple[bool, dict[str, Any]]]


def _seed_calls(sent: Sent) -> None:
    """The README's identify and track examples (seed: 'Identify a User', 'Track an Action')."""
    sent.append(
        analytics.identify(
            session_id="ajsk2jdj29fj298",
            user_id="ilya@segment.io",
            traits={"subscriptionPlan": "Free", "friends": 30},
        )
    )
    sent.append(analytics.track(user_id="ilya@segment.io", event="Played a Song"))
    sent.append(
        analytics.track(
            session_id="skdj2jj2dj2j3i5",
            user_id="calvin@segment.io",
            event="Made a Comment",
            properties={"thatAided": "No-One", "comment": "its 4AM!"},
        )
    )
    # 'Importing Historical Data': a timezone-aware datetime (the seed's tzutc()).
    when = datetime(2538, 10, 17, 0, 0, 0, 0, tzinfo=timezone.utc)
    sent.append(
        analytics.track(
            user_id="ilya@segment.io",
            timestamp=when,
            event="Bought a game",
            properties={"game": "Duke Nukem Forever"},
        )
    )


def _server_logs(sent: Sent) -> None:
    """The seed's 'Server Logs Example', with the stdlib parser instead of dateutil."""
    for entry in SERVER_LOG:
        (timestamp_str, user_id, url) = entry.split(" ")
        timestamp = datetime.fromisoformat(timestamp_str)  # has a timezone
        if timestamp.tzinfo is None:  # "have a timezone? check yo'self"
            raise click.ClickException(f"log timestamp {timestamp_str!r} has no timezone")
        sent.append(
            analytics.track(
                user_id=user_id,
                timestamp=timestamp,
                event="Bought a shirt",
                properties={"color": "Blue", "revenue": 17.90, "url": url},
            )
        )


def run_examples(url: str, timeout: float, say: Callable[[str], None]) -> Sent:
    """Run the seed's examples against `url` with the default client; flush; shut down."""
    analytics.init(DEMO_WRITE_KEY, host=url, log=False)
    sent: Sent = []
    try:
        say("identify, track and a historical track (the README examples) ...")
        _seed_calls(sent)
        say(f"the Server Logs Example: {len(SERVER_LOG)} log lines with timezones ...")
        _server_logs(sent)
        delivered = analytics.flush(timeout=timeout)
        say(f"flush: {'delivered' if delivered else 'NOT everything delivered'}")
    finally:
        analytics.shutdown(timeout=2.0)
    return sent


def _missing(sent: Sent, stored: list[dict[str, Any]]) -> list[str]:
    """The messageIds the client sent that the collector did not store (or refused)."""
    stored_ids = {m.get("messageId") for m in stored}
    missing = [
        str(msg.get("messageId")) for ok, msg in sent if msg.get("messageId") not in stored_ids
    ]
    missing += ["(not accepted by the client)" for ok, _ in sent if not ok]
    return missing


def say(text: str) -> None:
    """A progress note on standard error (stdout keeps the table)."""
    echo(f"· {text}", err=True)


@contextlib.contextmanager
def _embedded_collector(path: str) -> Iterator[CollectorServer]:
    """A started collector on 127.0.0.1 (any free port); a clear error if it cannot start."""
    try:
        server = CollectorServer(path, host="127.0.0.1", port=0).start()
    except (OSError, sqlite3.Error, StoreError, TimeoutError) as exc:
        raise click.ClickException(
            f"could not start the embedded collector with the database {path}: {exc}"
        ) from None
    try:
        yield server
    finally:
        server.stop(timeout=10.0)


def _db_path(db: str | None) -> str:
    if db is not None:
        return os.path.abspath(db)
    folder = tempfile.mkdtemp(prefix="analytics-demo-")
    return os.path.join(folder, "events.db")


@click.command("demo")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, writable=True),
    help="The SQLite file to store events in; default: events.db in a new temporary folder.",
)
@timeout_option(10.0, "waiting for the events to arrive")
def demo_command(db: str | None, timeout: float) -> None:
    """See the whole system work: a local collector, the README examples sent to it over
    HTTP, and what it stored. Needs no network; exits 0 only if every event arrived."""
    path = _db_path(db)
    with _embedded_collector(path) as server:
        say(f"collector listening on {server.url}, storing in {path}")
        say(f"live events page (while the demo runs): {server.url}/")
        sent = run_examples(server.url, timeout, say)
        ids = [msg.get("messageId") for _, msg in sent]
        stored = [m for m in server.store.events() if m.get("messageId") in ids]
    print_table(event_rows(stored), f"What the collector stored ({len(stored)} events)")
    missing = _missing(sent, stored)
    click.echo(
        "(timestamp is the event time corrected for clock skew, SPEC §5.3; the time the client"
        " sent is kept as originalTimestamp: see it with --json)"
    )
    click.echo("")
    echo(f"Database: {path}")
    echo(f"Look at it with:  analytics events --db {_quote(path)}")
    echo(
        f"Or watch it live:  analytics serve --db {_quote(path)}  then open http://127.0.0.1:8088/"
    )
    if missing:
        echo(f"error: {len(missing)} of {len(sent)} events did not arrive: {missing}", err=True)
        click.get_current_context().exit(EXIT_NOT_DELIVERED)
    click.echo(f"All {len(sent)} events arrived.")


def _quote(path: str) -> str:
    return shlex.quote(path)
