"""Batch assembly within SPEC §3 limits, and option handling."""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque

import orjson
import pytest

import analytics
from analytics._batch import MAX_BATCH_BYTES, MAX_BATCH_COUNT, envelope, take_batch


def test_take_batch_respects_the_count_limit() -> None:
    """At most 2,500 messages per batch; the rest stay queued, in order."""
    queue = deque(b'{"i":%d}' % i for i in range(3000))
    items = take_batch(queue, MAX_BATCH_BYTES)
    assert len(items) == MAX_BATCH_COUNT
    assert items[0] == b'{"i":0}'
    assert queue[0] == b'{"i":2500}'


def test_take_batch_respects_the_byte_limit() -> None:
    """Items plus separators never exceed the byte budget."""
    item = b'"' + b"x" * 998 + b'"'
    queue = deque([item] * 1000)
    items = take_batch(queue, 10_500)
    assert len(items) == 10
    assert len(b",".join(items)) <= 10_500
    assert len(queue) == 990


def test_envelope_is_valid_json_with_sent_at_and_write_key() -> None:
    """The body is {"batch": [...], "sentAt": ..., "writeKey": ...}."""
    body = orjson.loads(envelope([b'{"a":1}', b'{"b":2}'], "2024-01-01T00:00:00.000Z", b'"k"'))
    assert body == {
        "batch": [{"a": 1}, {"b": 2}],
        "sentAt": "2024-01-01T00:00:00.000Z",
        "writeKey": "k",
    }


def test_seed_defaults() -> None:
    """flush_at=20, flush_after=10 s, max_queue_size=100,000, async, INFO."""
    cfg = analytics.Client("key", flush_at_exit=False).config
    assert (cfg.flush_at, cfg.flush_after, cfg.max_queue_size) == (20, 10.0, 100_000)
    assert cfg.sync_mode is False
    assert cfg.host == "https://api.segment.io"


def test_seed_and_segment_option_names() -> None:
    """timedelta and seconds, async/async_, sync_mode, upload_size/upload_interval, debug."""
    cfg = analytics.Client("k", flush_after=dt.timedelta(seconds=3), flush_at_exit=False).config
    assert cfg.flush_after == 3.0
    assert analytics.Client("k", **{"async": False}, flush_at_exit=False).config.sync_mode
    assert analytics.Client("k", async_=False, flush_at_exit=False).config.sync_mode
    assert analytics.Client("k", sync_mode=True, flush_at_exit=False).config.sync_mode
    cfg = analytics.Client("k", upload_size=50, upload_interval=0.5, flush_at_exit=False).config
    assert (cfg.flush_at, cfg.flush_after) == (50, 0.5)
    assert analytics.Client("k", debug=True, flush_at_exit=False).config.log_level == logging.DEBUG
    cfg = analytics.Client("k", log_level=logging.WARNING, flush_at_exit=False).config
    assert cfg.log_level == logging.WARNING


def test_log_options_never_change_the_analytics_logger() -> None:
    """Behaviour changed on purpose: a client used to set the level of the shared `analytics`
    logger (the last client's log_level won, log=False silenced every client). Now log and
    log_level apply to the client's own records; the application's logger is left alone."""
    shared = logging.getLogger("analytics")
    before = (shared.level, shared.disabled, list(shared.handlers))
    for options in ({"debug": True}, {"log_level": logging.ERROR}, {"log": False}):
        analytics.Client("k", flush_at_exit=False, **options)
        assert (shared.level, shared.disabled, list(shared.handlers)) == before


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"flush_at": 0}, "flush_at"),
        ({"flush_at": 3000}, "flush_at"),
        ({"flush_after": -1}, "flush_after"),
        ({"timeout": 0}, "timeout"),
        ({"host": "api.segment.io"}, "host"),
        ({"max_retries": -1}, "max_retries"),
        ({"thread": 0}, "thread"),
        ({"flush_at": 10, "upload_size": 20}, "upload_size"),
        ({"bogus": 1}, "bogus"),
        ({"flush_at_exit": 0}, "flush_at_exit"),
        ({"log": "no"}, "log"),
        ({"spool_fsync": 1}, "spool_fsync"),
        ({"proxies": ["http://127.0.0.1:3128"]}, "proxies"),
        ({"proxies": {1: "http://127.0.0.1:3128"}}, "proxies"),
        ({"exit_timeout": float("inf")}, "exit_timeout"),
        ({"flush_timeout": float("nan")}, "flush_timeout"),
        ({"spool_interval": 0}, "spool_interval"),
    ],
)
def test_bad_options_raise_config_error_naming_them(kwargs: dict[str, object], name: str) -> None:
    """Each invalid option raises ConfigError (a ValueError) that names it."""
    with pytest.raises(analytics.ConfigError, match=name):
        analytics.Client("key", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "proxies", ["http://127.0.0.1:3128", {"https": "http://127.0.0.1:3128", "http": "x"}]
)
def test_proxies_may_be_a_url_or_a_mapping_of_str(proxies: str | dict[str, str]) -> None:
    """The two forms the README documents are accepted and kept as given."""
    client = analytics.Client("k", proxies=proxies, flush_at_exit=False)
    assert client.config.proxies == proxies


def test_flush_at_above_max_queue_size_is_lowered_to_it() -> None:
    """Segment accepts a queue smaller than the batch size: flush_at becomes max_queue_size."""
    cfg = analytics.Client("k", flush_at=50, max_queue_size=10, flush_at_exit=False).config
    assert (cfg.flush_at, cfg.max_queue_size) == (10, 10)


def test_write_key_is_required_to_send() -> None:
    """No write key and send=True is a ConfigError; send=False needs none."""
    with pytest.raises(analytics.ConfigError, match="write_key"):
        analytics.Client("")
    assert analytics.Client(send=False, flush_at_exit=False).config.send is False


def test_repr_never_shows_the_write_key() -> None:
    """repr shows the host only."""
    assert "secret" not in repr(analytics.Client("secret-key", flush_at_exit=False))


def test_every_client_keyword_is_an_option() -> None:
    """Each keyword parameter of Client() reaches the config (none silently ignored)."""
    import inspect

    from analytics._base import _OPTION_NAMES

    not_options = {
        "self",
        "write_key",
        "thread",
        "on_success",
        "on_failure",
        "on_error",
        "clock",
        "transport",
        # Segment 2.x compatibility, handled before the config: a handler for the analytics
        # logger, and OAuth options that are refused
        "log_handler",
        "oauth_client_id",
        "oauth_client_key",
        "oauth_key_id",
        "oauth_auth_server",
        "oauth_scope",
    }
    params = set(inspect.signature(analytics.Client.__init__).parameters) - {"options"}
    assert params - not_options == set(_OPTION_NAMES)
