"""The send commands and the message schema (`analytics._wire`) agree: a message the schema
refuses is a usage error of `analytics track|identify|...` (exit 2, nothing sent), and one it
accepts is delivered and stored by a real collector on 127.0.0.1."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from click.testing import CliRunner

from analytics import _wire
from analytics.cli import cli
from analytics.cli._send import FIELD_OF
from analytics.collector import CollectorServer

#: The flags tried per command (each absent, empty or set): the ids, and the type's own.
FLAGS = {
    "identify": ("user_id", "anonymous_id"),
    "track": ("user_id", "anonymous_id", "event"),
    "page": ("user_id", "anonymous_id", "name"),
    "screen": ("user_id", "anonymous_id", "category"),
    "group": ("user_id", "anonymous_id", "group_id"),
    "alias": ("user_id", "previous_id"),
}
VALUES = (None, "", "v")


def _cases() -> list[tuple[str, dict[str, str]]]:
    cases = []
    for kind, flags in FLAGS.items():
        for combo in itertools.product(VALUES, repeat=len(flags)):
            cases.append((kind, {f: v for f, v in zip(flags, combo, strict=True) if v is not None}))
    ids = {"user_id": "u"}
    for message_id in (
        "",
        "m" * _wire.MAX_MESSAGE_ID_CHARS,
        "m" * (_wire.MAX_MESSAGE_ID_CHARS + 1),
    ):
        cases.append(("identify", {**ids, "message_id": message_id}))
    return cases


def _schema_accepts(kind: str, values: dict[str, str]) -> bool:
    message: dict[str, Any] = {"type": kind, **{FIELD_OF[f]: v for f, v in values.items()}}
    try:
        _wire.check_message(message)
    except _wire.InvalidMessage:
        return False
    return True


def _args(kind: str, values: dict[str, str]) -> list[str]:
    flags = [[f"--{name.replace('_', '-')}", value] for name, value in values.items()]
    return [kind, *itertools.chain.from_iterable(flags)]


def test_the_send_commands_refuse_exactly_what_the_schema_refuses(
    collector: CollectorServer,
) -> None:
    """Every combination of absent, empty and set flags: the schema's verdict is the CLI's."""
    runner = CliRunner()
    stored = 0
    cases = _cases()
    assert 0 < sum(_schema_accepts(k, v) for k, v in cases) < len(cases)  # both verdicts tried
    for kind, values in cases:
        args = [*_args(kind, values), "--host", collector.url, "--retries", "0"]
        result = runner.invoke(cli, args, env={"ANALYTICS_WRITE_KEY": "k"})
        if _schema_accepts(kind, values):
            assert result.exit_code == 0, (args, result.output)
            stored += 1
        else:
            assert result.exit_code == 2, (args, result.output)
            assert "\nError: " in result.output, args  # click's usage error
        assert len(collector.store.events()) == stored, args  # a usage error sends nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["track"], "needs --user-id or --anonymous-id, and --event"),
        (["track", "--user-id", "u", "--event", ""], "needs --event"),
        (["page", "--user-id", ""], "needs --user-id or --anonymous-id"),
        (["alias"], "needs --previous-id and --user-id"),
        (["group", "--anonymous-id", "a"], "needs --group-id"),
    ],
)
def test_a_missing_field_is_named_by_its_flag(args: list[str], message: str) -> None:
    """The schema's required fields, said with the command's flag names."""
    result = CliRunner().invoke(cli, args, env={"ANALYTICS_WRITE_KEY": "k"})
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output


def test_the_cli_takes_its_required_fields_from_the_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One rule, one module: a field the schema starts to require, the CLI asks for."""
    page = _wire.REQUIREMENTS["page"]
    monkeypatch.setitem(_wire.REQUIREMENTS, "page", (*page, ("name",)))
    result = CliRunner().invoke(cli, ["page", "--user-id", "u"], env={"ANALYTICS_WRITE_KEY": "k"})
    assert result.exit_code == 2, result.output
    assert "needs --name" in result.output, result.output
