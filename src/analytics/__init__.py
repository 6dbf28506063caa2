"""analytics: server-side product analytics for Python.

The seed's API, on a module-level default client::

    import analytics
    analytics.init("WRITE_KEY")
    analytics.track(user_id="ilya@segment.io", event="Played a Song")

or any number of `Client` objects. Code written for Segment's analytics-python 2.x also works:
set ``analytics.write_key`` (and ``host``, ``on_error``, ``debug``, ``send``, ``sync_mode``,
``max_queue_size``, ``gzip``, ``timeout``, ``max_retries``, ``proxies``) before the first call,
and the default client is made from them.
"""

from __future__ import annotations

from analytics._exceptions import (
    AnalyticsError,
    ConfigError,
    DeliveryError,
    InvalidEventError,
    MessageTooLargeError,
    UnserializableError,
)
from analytics._version import __version__

# Not `from typing import TYPE_CHECKING`: importing typing alone costs more than this package.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping
    from typing import Any

    from analytics._async import AsyncClient
    from analytics._base import Id, Result, Timestamp
    from analytics._client import Client, Stats
    from analytics._reporting import ErrorCallback, FailureCallback, SuccessCallback
    from analytics._retry import Outcome as Response

__all__ = [
    "AnalyticsError",
    "AsyncClient",
    "Client",
    "ConfigError",
    "DeliveryError",
    "InvalidEventError",
    "MessageTooLargeError",
    "Response",
    "Stats",
    "UnserializableError",
    "__version__",
    "alias",
    "context",
    "flush",
    "group",
    "identify",
    "init",
    "join",
    "on_failure",
    "on_success",
    "page",
    "screen",
    "shutdown",
    "track",
]

# Segment 2.x module attributes: read when the default client is made by the first call.
write_key: str | None = None
host: str | None = None
on_error: ErrorCallback | None = None
debug: bool = False
send: bool = True
sync_mode: bool = False
max_queue_size: int | None = None
gzip: bool = False
timeout: float | None = None
max_retries: int | None = None
proxies: str | Mapping[str, str] | None = None
log_handler: logging.Handler | None = None
oauth_client_id: str | None = None
oauth_client_key: str | None = None
oauth_key_id: str | None = None
oauth_auth_server: str | None = None
oauth_scope: str | None = None

default_client: Client | None = None
_success: list[SuccessCallback] = []
_failure: list[FailureCallback] = []


def _lazy(name: str) -> Any:
    """Import the client machinery on first use, so ``import analytics`` stays fast.

    ``import analytics`` loads only this module, the exceptions and the version; `Client`
    (with threading, logging and, on first use, orjson and urllib3) loads when first named.
    """
    if name in ("Client", "Stats"):
        from analytics import _client  # noqa: PLC0415

        return getattr(_client, name)
    if name == "AsyncClient":
        from analytics._async import AsyncClient  # noqa: PLC0415

        return AsyncClient
    if name == "context":
        from analytics._context import context  # noqa: PLC0415

        return context
    if name == "Response":
        from analytics._retry import Outcome  # noqa: PLC0415

        return Outcome
    raise AttributeError(f"module 'analytics' has no attribute {name!r}")


def _init(write_key: str, **options: Any) -> Client:
    """Make the default client (replacing, and shutting down, any earlier one) and return it.

    Takes every `Client` option, e.g. ``init(key, flush_at=1, async_=False, log_level=DEBUG)``.
    """
    global default_client
    from analytics._client import Client, default_lock  # noqa: PLC0415

    client = Client(write_key, **options)
    _register_callbacks(client)
    with default_lock:
        old, default_client = default_client, client
    if old is not None:
        old.shutdown()
    return client


if TYPE_CHECKING:
    init = Client  # for type checkers: init() takes exactly Client()'s parameters
    from typing_extensions import Unpack

    from analytics._base import AsyncOption
    from analytics._context import context
else:
    init = _init
    _init.__name__ = _init.__qualname__ = "init"
    __getattr__ = _lazy  # a type checker sees no __getattr__: a misspelt name is an error


def _register_callbacks(client: Client) -> None:
    for on_ok in _success:
        client.on_success(on_ok)
    for on_fail in _failure:
        client.on_failure(on_fail)


def _default() -> Client:
    global default_client
    client = default_client
    if client is not None:
        return client
    from analytics._client import Client, default_lock  # noqa: PLC0415

    with default_lock:
        if default_client is None:
            if not write_key and send:
                raise ConfigError(
                    "no write key: call analytics.init(write_key) or set analytics.write_key first"
                )
            client = Client(
                write_key,
                host=host,
                on_error=on_error,
                debug=debug,
                send=send,
                sync_mode=sync_mode,
                max_queue_size=max_queue_size,
                gzip=gzip,
                timeout=timeout,
                max_retries=max_retries,
                proxies=proxies,
                log_handler=log_handler,
                oauth_client_id=oauth_client_id,
                oauth_client_key=oauth_client_key,
                oauth_key_id=oauth_key_id,
                oauth_auth_server=oauth_auth_server,
                oauth_scope=oauth_scope,
            )
            _register_callbacks(client)
            default_client = client
        return default_client


def identify(
    user_id: Id = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    anonymous_id: Id = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    *,
    session_id: Id = None,
) -> Result:
    """`Client.identify` on the default client."""
    return _default().identify(
        user_id,
        traits,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        session_id=session_id,
    )


def track(
    user_id: Id = None,
    event: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    anonymous_id: Id = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    *,
    session_id: Id = None,
) -> Result:
    """`Client.track` on the default client."""
    return _default().track(
        user_id,
        event,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        session_id=session_id,
    )


def page(
    user_id: Id = None,
    category: str | None = None,
    name: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    anonymous_id: Id = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    *,
    session_id: Id = None,
) -> Result:
    """`Client.page` on the default client."""
    return _default().page(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        session_id=session_id,
    )


def screen(
    user_id: Id = None,
    category: str | None = None,
    name: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    anonymous_id: Id = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    *,
    session_id: Id = None,
) -> Result:
    """`Client.screen` on the default client."""
    return _default().screen(
        user_id,
        category,
        name,
        properties,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        session_id=session_id,
    )


def group(
    user_id: Id = None,
    group_id: Id = None,
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    anonymous_id: Id = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    *,
    session_id: Id = None,
) -> Result:
    """`Client.group` on the default client."""
    return _default().group(
        user_id,
        group_id,
        traits,
        context,
        timestamp,
        anonymous_id,
        integrations,
        message_id,
        session_id=session_id,
    )


def alias(
    previous_id: Id = None,
    user_id: Id = None,
    context: Mapping[str, Any] | None = None,
    timestamp: Timestamp = None,
    integrations: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> Result:
    """`Client.alias` on the default client."""
    return _default().alias(previous_id, user_id, context, timestamp, integrations, message_id)


def flush(
    async_: bool = True, *, timeout: float | None = None, **options: Unpack[AsyncOption]
) -> bool:
    """`Client.flush` on the default client, made first from the module attributes when a
    write key is set (Segment's behaviour); True at once when there is none and no key."""
    client = _configured()
    return True if client is None else client.flush(async_, timeout=timeout, **options)


def shutdown(timeout: float | None = None) -> bool:
    """`Client.shutdown` on the default client (made first if configured, as `flush` does)."""
    client = _configured()
    return True if client is None else client.shutdown(timeout)


def _configured() -> Client | None:
    """The default client, made from the module attributes if a write key is set."""
    if default_client is not None:
        return default_client
    if not write_key and send:
        return None  # nothing can have been queued: no client exists without a key
    return _default()


join = shutdown


def on_success(fn: SuccessCallback) -> SuccessCallback:
    """Call ``fn(data, response)`` after each batch the default client delivers."""
    _success.append(fn)
    if default_client is not None:
        default_client.on_success(fn)
    return fn


def on_failure(fn: FailureCallback) -> FailureCallback:
    """Call ``fn(data, error)`` for messages the default client drops or cannot deliver."""
    _failure.append(fn)
    if default_client is not None:
        default_client.on_failure(fn)
    return fn
