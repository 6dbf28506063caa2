"""Celery: a task carries the context of the code that enqueued it, and runs inside it.

Call `connect()` once in every process that sends or runs tasks (where the Celery app is
made is a good place). When a task is published inside an `analytics.context` block (a web
request with one of our middlewares, or your own block), the block's user ids and context go
in the message's ``analytics_context`` header, as a JSON string (so any task serializer
carries it); the worker opens the same block around the task, so events tracked by the task
carry the request's user, ``requestId`` and page. A task published outside any block runs
outside any block.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from analytics._context import context, current
from analytics._message import _default

__all__ = ["HEADER", "connect", "disconnect"]

HEADER = "analytics_context"
MAX_HEADER_BYTES = 32_000  # the message size limit: a bigger context is not worth a header

logger = logging.getLogger("analytics")

_open: dict[str, context] = {}  # task id -> the block opened for it (closed by postrun)


def connect() -> None:
    """Connect the publish and run signal handlers (idempotent)."""
    before_task_publish.connect(_publish, weak=False, dispatch_uid=f"{__name__}.publish")
    task_prerun.connect(_prerun, weak=False, dispatch_uid=f"{__name__}.prerun")
    task_postrun.connect(_postrun, weak=False, dispatch_uid=f"{__name__}.postrun")


def disconnect() -> None:
    """Undo `connect`."""
    before_task_publish.disconnect(_publish, dispatch_uid=f"{__name__}.publish")
    task_prerun.disconnect(_prerun, dispatch_uid=f"{__name__}.prerun")
    task_postrun.disconnect(_postrun, dispatch_uid=f"{__name__}.postrun")


def _publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    frame = current()
    if frame is None or headers is None:
        return
    state = {"user_id": frame.user_id, "anonymous_id": frame.anonymous_id}
    try:
        data = orjson.dumps(
            {**state, "context": frame.context},
            default=_default,
            option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS,
        )
    except orjson.JSONEncodeError as exc:
        logger.warning(
            "task %s is sent without its analytics context: %s", headers.get("task"), exc
        )
        return
    if len(data) > MAX_HEADER_BYTES:
        logger.warning(
            "task %s is sent without its analytics context (%d bytes)",
            headers.get("task"),
            len(data),
        )
        return
    headers[HEADER] = data.decode()


def _prerun(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    data = _header(task)
    if not data:
        return
    try:
        state = orjson.loads(data)
        block = context(state["user_id"], state["anonymous_id"], context=state["context"])
    except Exception as exc:  # a foreign or damaged header must not fail the task
        logger.warning("task %s: its analytics context header is unusable: %s", task_id, exc)
        return
    block.__enter__()
    _open[task_id] = block


def _postrun(task_id: str, **_: Any) -> None:
    block = _open.pop(task_id, None)
    if block is not None:
        block.__exit__(None, None, None)


def _header(task: Task[Any, Any]) -> Any:
    """The header as the worker got it: protocol 2 puts custom headers on the request itself;
    older paths keep them in ``request.headers``."""
    request = task.request
    value = getattr(request, HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value
