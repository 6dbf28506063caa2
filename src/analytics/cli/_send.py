"""`analytics track|identify|page|screen|group|alias`: send one event from a shell or cron job.

Each command builds one SPEC message from its flags (pure, `build_message`), sends it with a
dedicated client and waits, at most `--timeout` seconds, until the collector acknowledges it.
Exit 0 when delivered; otherwise the reason on standard error and a non-zero code
(1 refused, 3 collector unreachable, 2 bad flags). The write key is never printed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

import analytics
from analytics import DeliveryError, _wire
from analytics.cli._delivery import (
    DeliveryTracker,
    describe_failure,
    is_unreachable,
    short_detail,
)
from analytics.cli._escape import echo
from analytics.cli._options import (
    EXIT_NOT_DELIVERED,
    EXIT_UNREACHABLE,
    IsoTimestamp,
    JsonObject,
    host_option,
    is_naive,
    require_write_key,
    timeout_option,
    write_key_option,
)

__all__ = ["SEND_COMMANDS", "build_message", "deliver_one", "make_send_command"]

# flag name -> SPEC field; the flags each command takes on top of the common ones.
FIELD_OF = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "event": "event",
    "name": "name",
    "category": "category",
    "group_id": "groupId",
    "previous_id": "previousId",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
    "timestamp": "timestamp",
    "message_id": "messageId",
}

SEND_COMMANDS: dict[str, tuple[str, ...]] = {
    "track": ("event", "properties"),
    "identify": ("traits",),
    "page": ("name", "category", "properties"),
    "screen": ("name", "category", "properties"),
    "group": ("group_id", "traits"),
    "alias": ("previous_id",),
}

HELP = {
    "track": "Record an action a user performed (needs --event).",
    "identify": "Tie a user to their traits.",
    "page": "Record a page view.",
    "screen": "Record a screen view in a mobile app.",
    "group": "Associate a user with a group (needs --group-id).",
    "alias": "Merge two identities: --previous-id becomes --user-id.",
}

FLAG_OF = {spec: flag for flag, spec in FIELD_OF.items()}


def build_message(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The SPEC message for `kind` from the flag values (None values left out).

    Raises click.UsageError when the message lacks a field the message rules
    (`analytics._wire.REQUIREMENTS`) require, naming the flags that would give it.
    """
    message: dict[str, Any] = {"type": kind}
    for name, value in values.items():
        if value is not None and name in FIELD_OF:
            message[FIELD_OF[name]] = value
    missing = _wire.missing_fields(kind, message)
    if missing:
        groups = [" or ".join("--" + _flag(name) for name in group) for group in missing]
        joint = ", and " if any(len(group) > 1 for group in missing) else " and "
        raise click.UsageError(f"`analytics {kind}` needs {joint.join(groups)}")
    return message


def _flag(field: str) -> str:
    return FLAG_OF[field].replace("_", "-")


def deliver_one(
    message: Mapping[str, Any], *, host: str, write_key: str, timeout: float, retries: int
) -> int:
    """Send one message and wait for the acknowledgement; print the outcome; the exit code."""
    tracker = DeliveryTracker()
    client = analytics.Client(
        write_key,
        host=host,
        flush_at=1,
        max_retries=retries,
        timeout=min(timeout, 15.0),
        log=False,
        on_success=tracker.on_success,
        on_failure=tracker.on_failure,
    )
    error = None
    try:
        try:
            accepted, sent = client.enqueue(message)
        except (analytics.InvalidEventError, TypeError) as exc:
            raise click.UsageError(str(exc)) from None
        if accepted:
            client.flush(timeout=timeout)
        error = tracker.last_error  # before shutdown() gives up on what is still in flight
    finally:
        client.shutdown(timeout=1.0)
    if tracker.sent:
        echo(f"delivered {message['type']} {sent.get('messageId')}")
        return 0
    if error is not None or not accepted:
        return _report_failure(error or tracker.last_error, host)
    last = tracker.last_error
    hint = ""
    if last is not None and "last attempt" in last.detail:
        hint = f"; last attempt: {short_detail(last.detail.partition('last attempt: ')[2])}"
    echo(
        f"error: not delivered: the collector at {host} did not acknowledge the event"
        f" within {timeout:g}s{hint} (raise --timeout, or check that it is running)",
        err=True,
    )
    return EXIT_UNREACHABLE


def _report_failure(error: DeliveryError | None, host: str) -> int:
    if error is None:
        echo("error: not delivered: the client did not accept the message", err=True)
        return EXIT_NOT_DELIVERED
    echo(f"error: not delivered: {describe_failure(error, host)}", err=True)
    return EXIT_UNREACHABLE if is_unreachable(error) else EXIT_NOT_DELIVERED


def _common_options(func: Callable[..., Any], kind: str) -> Callable[..., Any]:
    options = [
        click.option("--user-id", metavar="ID", help="The user's id in your database."),
        click.option("--anonymous-id", metavar="ID", help="An id for a user who is not signed in."),
        click.option("--context", type=JsonObject(), help="Context object, as JSON."),
        click.option("--integrations", type=JsonObject(), help="Integrations object, as JSON."),
        click.option(
            "--timestamp",
            type=IsoTimestamp(),
            help="When it happened (ISO-8601, with a timezone); default: now.",
        ),
        click.option("--message-id", metavar="ID", help="Dedupe key; default: a new UUID."),
        host_option,
        write_key_option,
        timeout_option(10.0, "waiting for delivery"),
        click.option(
            "--retries",
            type=click.IntRange(0, 20),
            default=3,
            show_default=True,
            help="Retries after a failed attempt (backoff 0.5s, 1s, 2s ...).",
        ),
    ]
    if kind == "alias":
        options = options[:1] + options[2:]
    for option in reversed(options):
        func = option(func)
    return func


_SPECIFIC: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "event": click.option("--event", metavar="NAME", help='What happened, e.g. "Played a Song".'),
    "properties": click.option("--properties", type=JsonObject(), help="Properties, as JSON."),
    "traits": click.option("--traits", type=JsonObject(), help="Traits, as JSON."),
    "name": click.option("--name", metavar="NAME", help="The page or screen name."),
    "category": click.option("--category", metavar="NAME", help="The page or screen category."),
    "group_id": click.option("--group-id", metavar="ID", help="The group's id."),
    "previous_id": click.option("--previous-id", metavar="ID", help="The old id."),
}


def make_send_command(kind: str) -> click.Command:
    """Build the click command for one call type."""

    def command(
        host: str, write_key: str | None, timeout: float, retries: int, **values: Any
    ) -> None:
        key = require_write_key(write_key)
        message = build_message(kind, values)
        stamp = message.get("timestamp")
        if stamp is not None and is_naive(stamp):
            echo(
                f"warning: --timestamp {stamp!r} has no timezone; the library's rule applies"
                " (naive times are taken as UTC)",
                err=True,
            )
        code = deliver_one(message, host=host, write_key=key, timeout=timeout, retries=retries)
        click.get_current_context().exit(code)

    func: Callable[..., Any] = _common_options(command, kind)
    for name in reversed(SEND_COMMANDS[kind]):
        func = _SPECIFIC[name](func)
    return click.command(kind, help=HELP[kind])(func)
