"""Celery: the context of the web request that enqueued a task is restored in the worker.

Broker: kombu's filesystem transport in a temporary directory (each message, headers included,
is serialized to a JSON file and read back; no broker server), with one change: a message file
appears only once written (write, then rename). The stock transport creates the file, then
writes it, and its reader does not lock: under concurrent publishers the worker read an empty
file and died ("Unrecoverable error: JSONDecodeError", kombu issue #1551). Worker: a real Celery
``WorkController`` (the thread pool, two threads) started in this process by
``celery.contrib.testing.worker.start_worker``. Results: the in-memory cache backend, so the
test waits for each task with a bounded ``AsyncResult.get``. Requests: Flask on werkzeug's
threaded server on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask
from kombu.transport import filesystem
from kombu.utils.json import dumps
from werkzeug.serving import make_server

import analytics
from analytics.integrations import celery as analytics_celery
from analytics.integrations.flask import Analytics
from analytics.testing import Capture

from .conftest import CONCURRENT, get, get_all


class AtomicChannel(filesystem.Channel):
    """The filesystem channel, publishing each message file in one rename."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        folder = self.data_folder_out
        name = f"{int(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(folder, f".{uuid.uuid4()}.partial")  # never matches a queue
        with open(partial, "wb") as file:
            file.write(dumps(payload).encode())
        os.replace(partial, os.path.join(folder, name))


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicChannel


@pytest.fixture(scope="module")
def celery_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Celery]:
    """A Celery app on a filesystem broker with a running in-process worker (2 threads), for
    the module (Celery registers task names once per process)."""
    folder = tmp_path_factory.mktemp("broker")
    for sub in ("out", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    app = Celery("integration-test", set_as_current=False)
    app.conf.update(
        broker_url=None,
        broker_transport=AtomicFilesystemTransport,
        broker_transport_options={
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # default: ./control in the cwd
            "store_processed": False,
            "polling_interval": 0.02,  # the worker looks for new files every 20 ms (default 1 s)
        },
        result_backend="cache+memory://",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=False,
    )

    @app.task(name="receipt")
    def receipt(order: int) -> dict[str, Any]:
        analytics.track(event="Receipt Sent", properties={"order": order})
        frame = analytics._context.current()
        return {"user": frame.user_id if frame else None}

    @app.task(name="whoami")
    def whoami() -> Any:
        frame = analytics._context.current()
        return frame.user_id if frame else None

    @app.task(name="cleanup")
    def cleanup(n: int) -> None:
        analytics.track(event="Cleaned", anonymous_id="system", properties={"n": n})

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, AtomicFilesystemTransport)
    analytics_celery.connect()
    try:
        with start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10
        ):
            yield app
    finally:
        analytics_celery.disconnect()


@pytest.fixture
def shop(celery_app: Celery, serve_forever: Callable[[Any], str]) -> str:
    """A Flask shop whose /order/<n> tracks an event and enqueues the receipt task."""
    web = Flask(__name__)
    Analytics(web, user_id=lambda request: request.headers.get("X-User"))

    @web.get("/order/<int:n>")
    def order(n: int) -> str:
        analytics.track(event="Ordered", properties={"order": n})
        return str(celery_app.tasks["receipt"].delay(n).id)

    return serve_forever(make_server("127.0.0.1", 0, web, threaded=True))


def test_task_runs_in_the_context_of_the_request_that_enqueued_it(
    captured: Capture, celery_app: Celery, shop: str
) -> None:
    task_id = get(
        f"{shop}/order/7?coupon=X",
        {"X-User": "ada", "X-Request-ID": "req-77", "User-Agent": "ua/1", "Accept-Language": "it"},
    )
    assert celery_app.AsyncResult(task_id).get(timeout=20) == {"user": "ada"}
    ordered, sent = sorted(captured.messages, key=lambda m: m["event"])
    assert (ordered["event"], sent["event"]) == ("Ordered", "Receipt Sent")
    assert sent["userId"] == "ada"
    for field in ("page", "requestId", "userAgent", "locale"):
        assert sent["context"][field] == ordered["context"][field]
    assert sent["context"]["requestId"] == "req-77"
    assert sent["context"]["page"]["search"] == "?coupon=X"
    assert sent["context"]["locale"] == "it"


def test_concurrent_requests_tasks_keep_their_own_user_and_later_tasks_get_none(
    captured: Capture, celery_app: Celery, shop: str
) -> None:
    """Eight requests at once, eight tasks on two worker threads; then tasks sent outside any
    request run on the same (reused) threads and must carry nothing of the earlier ones."""
    ids = get_all([(f"{shop}/order/{n}", {"X-User": f"u{n}"}) for n in range(CONCURRENT)])
    results = [celery_app.AsyncResult(task_id).get(timeout=20) for task_id in ids]
    assert results == [{"user": f"u{n}"} for n in range(CONCURRENT)]
    later = [celery_app.tasks["cleanup"].delay(n) for n in range(4)]
    for result in later:
        result.get(timeout=20)
    receipts = [m for m in captured.messages if m["event"] == "Receipt Sent"]
    assert len(receipts) == CONCURRENT
    for message in receipts:
        assert message["userId"] == f"u{message['properties']['order']}"
    cleaned = [m for m in captured.messages if m["event"] == "Cleaned"]
    assert len(cleaned) == 4
    for message in cleaned:
        assert "userId" not in message
        assert "page" not in message["context"]
        assert "requestId" not in message["context"]


def test_block_opened_by_the_app_travels_with_its_traits(
    captured: Capture, celery_app: Celery
) -> None:
    """Not only requests: any analytics.context block (here with traits) goes with the task."""
    with analytics.context(user_id=5, traits={"plan": "pro"}, context={"app": {"name": "cron"}}):
        result = celery_app.tasks["receipt"].delay(1)
    assert result.get(timeout=20) == {"user": 5}
    [message] = captured.messages
    assert message["userId"] == "5"
    assert message["context"]["traits"] == {"plan": "pro"}
    assert message["context"]["app"] == {"name": "cron"}


def test_damaged_header_is_ignored_and_the_task_runs(captured: Capture, celery_app: Celery) -> None:
    result = celery_app.tasks["cleanup"].apply_async((9,), headers={"analytics_context": "{oops"})
    assert result.get(timeout=20) is None
    [message] = captured.messages
    assert message["anonymousId"] == "system"
    assert "userId" not in message


def test_a_context_that_cannot_travel_is_left_behind_with_a_warning(
    captured: Capture, celery_app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="analytics"),
        analytics.context(user_id="ada", context={"socket": object()}),
    ):
        result = celery_app.tasks["whoami"].delay()
    assert result.get(timeout=20) is None
    assert captured.messages == []
    assert "task whoami is sent without its analytics context" in caplog.text


def test_connect_is_idempotent(captured: Capture, celery_app: Celery) -> None:
    """Connecting again must not open two blocks per task: the one left open would leak into
    the next tasks of that worker thread."""
    analytics_celery.connect()
    analytics_celery.connect()
    with analytics.context(user_id="twice"):
        result = celery_app.tasks["receipt"].delay(2)
    assert result.get(timeout=20) == {"user": "twice"}
    for later in [celery_app.tasks["cleanup"].delay(n) for n in range(4)]:
        later.get(timeout=20)
    cleaned = [m for m in captured.messages if m["event"] == "Cleaned"]
    assert len(cleaned) == 4
    assert all("userId" not in m for m in cleaned)
