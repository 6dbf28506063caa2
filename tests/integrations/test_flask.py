"""Flask extension, served by werkzeug's own threaded server on 127.0.0.1."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, g, request
from werkzeug.serving import make_server

import analytics
from analytics._context import Frame, current
from analytics.integrations.flask import Analytics
from analytics.testing import Capture

from .conftest import CONCURRENT, get, get_all


@pytest.fixture
def serve_werkzeug(serve_forever: Callable[[Any], str]) -> Callable[[Flask], str]:
    """``serve_werkzeug(app)``: werkzeug's own threaded server on 127.0.0.1; its base URL."""
    return lambda app: serve_forever(make_server("127.0.0.1", 0, app, threaded=True))


def make_app(**options: Any) -> Flask:
    """An app whose own hook loads the user (registered before the extension, as documented)."""
    app = Flask(__name__)

    @app.before_request
    def load_user() -> None:
        g.user = request.headers.get("X-User")

    options.setdefault("user_id", lambda request: g.user)
    Analytics(app, **options)

    @app.get("/buy")
    def buy() -> str:
        analytics.track(event="Bought", properties={"item": request.args["item"]})
        return "ok"

    return app


def test_event_carries_the_request_field_by_field(
    captured: Capture, serve_werkzeug: Callable[[Flask], str]
) -> None:
    base = serve_werkzeug(make_app())
    get(
        f"{base}/buy?item=cake&q=a%20b",
        {
            "X-User": "ada",
            "User-Agent": "curl/8.0",
            "Referer": "https://example.org/",
            "Accept-Language": "*, es-419;q=0.9, en;q=0.5",
            "X-Request-ID": "fl-1",
        },
    )
    [message] = captured.messages
    assert message["userId"] == "ada"
    context = message["context"]
    assert context["page"] == {
        "path": "/buy",
        "referrer": "https://example.org/",
        "search": "?item=cake&q=a%20b",
        "url": f"{base}/buy?item=cake&q=a%20b",
    }
    assert context["userAgent"] == "curl/8.0"
    assert context["locale"] == "es-419"
    assert context["requestId"] == "fl-1"
    assert "ip" not in context


def test_path_is_percent_encoded_as_sent(
    captured: Capture, serve_werkzeug: Callable[[Flask], str]
) -> None:
    app = make_app()

    @app.get("/p/<name>")
    def named(name: str) -> str:
        analytics.track(event="Named", properties={"name": name})
        return "ok"

    base = serve_werkzeug(app)
    get(f"{base}/p/caf%C3%A9%20x?q=%C3%A9", {"X-User": "ada"})
    [message] = captured.messages
    assert message["properties"]["name"] == "café x"
    assert message["context"]["page"]["path"] == "/p/caf%C3%A9%20x"
    assert message["context"]["page"]["url"] == f"{base}/p/caf%C3%A9%20x?q=%C3%A9"


def test_ip_when_asked(captured: Capture, serve_werkzeug: Callable[[Flask], str]) -> None:
    base = serve_werkzeug(make_app(capture_ip=True))
    get(f"{base}/buy?item=a", {"X-User": "ada", "X-Forwarded-For": "203.0.113.1"})
    [message] = captured.messages
    assert message["context"]["ip"] == "127.0.0.1"  # proxy_count=0: the header is not trusted


def test_concurrent_requests_keep_their_own_user(
    captured: Capture, serve_werkzeug: Callable[[Flask], str]
) -> None:
    app = make_app()
    barrier = threading.Barrier(CONCURRENT, timeout=10)

    @app.get("/held/<int:n>")
    def held(n: int) -> str:
        analytics.track(event="Before", properties={"n": n})
        barrier.wait()
        analytics.track(event="After", properties={"n": n})
        return "ok"

    base = serve_werkzeug(app)
    get_all([(f"{base}/held/{n}", {"X-User": f"u{n}"}) for n in range(CONCURRENT)])
    assert len(captured.messages) == 2 * CONCURRENT
    for message in captured.messages:
        n = message["properties"]["n"]
        assert message["userId"] == f"u{n}"
        assert message["context"]["page"]["path"] == f"/held/{n}"


def test_block_is_closed_when_the_view_raises(
    captured: Capture, serve_werkzeug: Callable[[Flask], str]
) -> None:
    """teardown_request closes the block even after an exception (the earlier-registered
    teardown runs after ours and sees no frame; the later one runs before and sees it)."""
    app = Flask(__name__)
    seen: dict[str, Frame | None] = {}
    app.teardown_request(lambda exc: seen.setdefault("after_ours", current()))
    Analytics(app, anonymous_id=lambda request: request.headers["X-Anon"])
    app.teardown_request(lambda exc: seen.setdefault("before_ours", current()))

    @app.get("/boom")
    def boom() -> str:
        analytics.track(event="Boom")
        raise RuntimeError("view failed")

    with pytest.raises(urllib.error.HTTPError, match="500"):
        get(f"{serve_werkzeug(app)}/boom", {"X-Anon": "anon-3"})
    [message] = captured.messages
    assert message["anonymousId"] == "anon-3"
    assert seen["after_ours"] is None
    frame = seen["before_ours"]
    assert frame is not None
    assert frame.anonymous_id == "anon-3"


def test_init_app_later() -> None:
    extension = Analytics(capture_ip=True)
    app = Flask(__name__)
    extension.init_app(app)
    assert app.extensions["analytics"] is extension
    assert extension.settings.capture_ip is True
