"""ASGI middleware, served by uvicorn on 127.0.0.1: FastAPI, Starlette and a bare ASGI app."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.sync.client import connect

import analytics
from analytics.integrations.asgi import AnalyticsMiddleware
from analytics.testing import Capture

from .conftest import CONCURRENT, AsyncGate, get, get_all

Serve = Callable[[Any], str]


def header(name: str) -> Callable[[Any], str | None]:
    """A resolver reading one request header from the ASGI scope (the tests' way to log in)."""
    key = name.lower().encode()

    def resolve(scope: Any) -> str | None:
        for raw_name, value in scope["headers"]:
            if raw_name == key:
                return str(value.decode())
        return None

    return resolve


def fastapi_app(**options: Any) -> FastAPI:
    app = FastAPI()
    options.setdefault("user_id", header("X-User"))
    options.setdefault("anonymous_id", header("X-Anonymous"))
    app.add_middleware(AnalyticsMiddleware, **options)

    @app.get("/buy")
    async def buy(item: str) -> dict[str, str]:
        analytics.track(event="Bought", properties={"item": item})
        return {"ok": item}

    @app.get("/as/{who}")
    async def as_someone(who: str) -> dict[str, str]:
        analytics.track(user_id=who, event="Explicit")
        return {"ok": who}

    return app


def test_fastapi_event_carries_the_request_field_by_field(
    captured: Capture, serve_asgi: Serve
) -> None:
    """page, userAgent, locale, requestId from the request; userId from the resolver; no ip."""
    base = serve_asgi(fastapi_app())
    get(
        f"{base}/buy?item=tea&size=2",
        {
            "X-User": "ada",
            "User-Agent": "Mozilla/5.0 (test)",
            "Referer": "https://example.com/shop",
            "Accept-Language": "en;q=0.8, fr-ch, fr;q=0.9",
            "X-Request-ID": "req-0001",
        },
    )
    [message] = captured.messages
    assert message["event"] == "Bought"
    assert message["userId"] == "ada"
    assert "anonymousId" not in message
    context = message["context"]
    assert context["page"] == {
        "path": "/buy",
        "referrer": "https://example.com/shop",
        "search": "?item=tea&size=2",
        "url": f"{base}/buy?item=tea&size=2",
    }
    assert context["userAgent"] == "Mozilla/5.0 (test)"
    assert context["locale"] == "fr-CH"
    assert context["requestId"] == "req-0001"
    assert "ip" not in context
    assert context["library"]["name"]  # the client's own context is still there


def test_request_without_optional_headers(captured: Capture, serve_asgi: Serve) -> None:
    """No Referer/UA/Accept-Language: empty referrer and search; a fresh request id each."""
    base = serve_asgi(fastapi_app())
    get(f"{base}/buy?item=a", {"X-Anonymous": "anon-1", "User-Agent": ""})
    get(f"{base}/buy?item=b", {"X-Anonymous": "anon-2", "User-Agent": ""})
    first, second = captured.messages
    assert first["anonymousId"] == "anon-1"
    assert "userId" not in first
    assert first["context"]["page"]["referrer"] == ""
    assert "userAgent" not in first["context"]
    assert "locale" not in first["context"]
    ids = [m["context"]["requestId"] for m in (first, second)]
    assert ids[0] != ids[1]
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{14}", i)
        for i in ids
    )


def test_explicit_user_id_wins_over_the_resolver(captured: Capture, serve_asgi: Serve) -> None:
    base = serve_asgi(fastapi_app())
    get(f"{base}/as/grace", {"X-User": "ada"})
    [message] = captured.messages
    assert message["userId"] == "grace"
    assert message["context"]["page"]["path"] == "/as/grace"


@pytest.mark.parametrize(
    ("options", "forwarded", "expected"),
    [
        ({}, "203.0.113.7", None),
        ({"capture_ip": True}, "", "127.0.0.1"),
        ({"capture_ip": True}, "203.0.113.7", "127.0.0.1"),  # not behind a proxy: header ignored
        ({"capture_ip": True, "proxy_count": 1}, "203.0.113.7, 198.51.100.2", "198.51.100.2"),
        ({"capture_ip": True, "proxy_count": 2}, "203.0.113.7, 198.51.100.2", "203.0.113.7"),
        ({"capture_ip": True, "proxy_count": 3}, "203.0.113.7, 198.51.100.2", "127.0.0.1"),
        ({"capture_ip": True, "proxy_count": 1}, "not-an-ip", "127.0.0.1"),
    ],
)
def test_ip_only_when_asked_and_forwarded_for_only_behind_proxies(
    captured: Capture,
    serve_asgi: Serve,
    options: dict[str, Any],
    forwarded: str,
    expected: str | None,
) -> None:
    base = serve_asgi(fastapi_app(**options))
    headers = {"X-User": "ada"} | ({"X-Forwarded-For": forwarded} if forwarded else {})
    get(f"{base}/buy?item=x", headers)
    [message] = captured.messages
    assert message["context"].get("ip") == expected


def test_concurrent_requests_keep_their_own_user(captured: Capture, serve_asgi: Serve) -> None:
    """Eight requests held in flight together, async and thread-pool endpoints: no leaks."""
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, user_id=header("X-User"))
    everyone = AsyncGate(CONCURRENT // 2)
    gate = threading.Barrier(CONCURRENT // 2, timeout=10)

    @app.get("/async/{n}")
    async def in_loop(n: int) -> str:
        analytics.track(event="Before", properties={"n": n})
        await everyone.wait()
        analytics.track(event="After", properties={"n": n})
        return "ok"

    @app.get("/sync/{n}")
    def in_thread(n: int) -> str:
        analytics.track(event="Before", properties={"n": n})
        gate.wait()
        analytics.track(event="After", properties={"n": n})
        return "ok"

    base = serve_asgi(app)
    requests = [
        (
            f"{base}/{'async' if n % 2 else 'sync'}/{n}",
            {"X-User": f"user-{n}", "X-Request-ID": f"r{n}"},
        )
        for n in range(CONCURRENT)
    ]
    get_all(requests)
    assert len(captured.messages) == 2 * CONCURRENT
    for message in captured.messages:
        n = message["properties"]["n"]
        assert message["userId"] == f"user-{n}"
        assert message["context"]["requestId"] == f"r{n}"
        assert message["context"]["page"]["path"].endswith(f"/{n}")


def test_background_task_after_the_response_keeps_the_context(
    captured: Capture, serve_asgi: Serve
) -> None:
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, user_id=header("X-User"))
    done = threading.Event()

    def later() -> None:
        analytics.track(event="Emailed")
        done.set()

    @app.get("/signup")
    async def signup(tasks: BackgroundTasks) -> str:
        tasks.add_task(later)
        return "ok"

    get(f"{serve_asgi(app)}/signup", {"X-User": "ada", "X-Request-ID": "bg-1"})
    assert done.wait(10)
    [message] = captured.messages
    assert (message["event"], message["userId"]) == ("Emailed", "ada")
    assert message["context"]["requestId"] == "bg-1"


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("X-User")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def starlette_user(scope: Any) -> str | None:
    """An async resolver: Starlette's authenticated user, set by AuthenticationMiddleware."""
    await asyncio.sleep(0)
    user = scope["user"]
    return str(user.username) if user.is_authenticated else None


def test_starlette_user_from_authentication_middleware(
    captured: Capture, serve_asgi: Serve
) -> None:
    async def home(request: Request) -> PlainTextResponse:
        analytics.track(event="Home")
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/home", home)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(
                AnalyticsMiddleware, user_id=starlette_user, anonymous_id=header("X-Anonymous")
            ),
        ],
    )
    base = serve_asgi(app)
    get(f"{base}/home", {"X-User": "linus", "Accept-Language": "de-de"})
    get(f"{base}/home", {"X-Anonymous": "visitor"})
    signed_in, visitor = captured.messages
    assert (signed_in["userId"], signed_in["context"]["locale"]) == ("linus", "de-DE")
    assert "userId" not in visitor
    assert visitor["anonymousId"] == "visitor"


def test_bare_asgi_app_and_a_resolver_that_raises(
    captured: Capture, serve_asgi: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Any ASGI callable works; a failing resolver is logged and the request still succeeds."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        analytics.track(event="Raw", anonymous_id="a-1")
        body = json.dumps(analytics._context.current().context["page"]).encode()  # type: ignore[union-attr]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def broken(scope: Any) -> str:
        raise RuntimeError("no session store")

    with caplog.at_level(logging.ERROR, logger="analytics"):
        body = get(f"{serve_asgi(AnalyticsMiddleware(app, user_id=broken))}/raw/p%20q?x=%C3%A9")
    assert json.loads(body)["path"] == "/raw/p%20q"
    [message] = captured.messages
    assert "userId" not in message
    assert message["context"]["page"]["search"] == "?x=%C3%A9"
    assert "user_id resolver raised" in caplog.text


def test_lifespan_passes_through_outside_any_block() -> None:
    seen: list[tuple[str, object]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], analytics._context.current()))

    async def nothing() -> Any:
        return {}

    asyncio.run(AnalyticsMiddleware(app)({"type": "lifespan"}, nothing, nothing))
    assert seen == [("lifespan", None)]


def test_options_are_checked_at_setup() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        """Never called."""

    with pytest.raises(TypeError, match="user_id"):
        AnalyticsMiddleware(app, user_id="ada")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="proxy_count"):
        AnalyticsMiddleware(app, proxy_count=-1)
    with pytest.raises(TypeError, match="capture_ip"):
        AnalyticsMiddleware(app, capture_ip="yes")  # type: ignore[arg-type]


def test_async_client_delivers_each_requests_context_to_the_collector(
    collector: Any, serve_asgi: Serve
) -> None:
    """End to end: FastAPI + AsyncClient on uvicorn's loop, concurrent requests held in flight
    together, delivered over HTTP to our collector; each stored event has its own request's."""
    client = analytics.AsyncClient("key", host=collector.url, flush_at=100)
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, user_id=header("X-User"), capture_ip=True)
    gate = AsyncGate(CONCURRENT)

    @app.get("/play/{n}")
    async def play(n: int) -> str:
        client.track(event="Played", properties={"n": n})
        await gate.wait()
        client.track(event="Paused", properties={"n": n})
        return "ok"

    @app.post("/shutdown")
    async def shutdown() -> bool:
        return await client.shutdown(10)

    base = serve_asgi(app)
    get_all(
        [
            (f"{base}/play/{n}?t={n}", {"X-User": f"p{n}", "X-Request-ID": f"id-{n}"})
            for n in range(CONCURRENT)
        ]
    )
    request = urllib.request.Request(f"{base}/shutdown", method="POST")
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.read() == b"true"
    stored = collector.store.events()
    assert len(stored) == 2 * CONCURRENT
    for message in stored:
        n = message["properties"]["n"]
        assert message["userId"] == f"p{n}"
        context = message["context"]
        assert context["requestId"] == f"id-{n}"
        assert context["page"] == {
            "path": f"/play/{n}",
            "referrer": "",
            "search": f"?t={n}",
            "url": f"{base}/play/{n}?t={n}",
        }
        assert context["ip"] == "127.0.0.1"


def test_websocket_messages_carry_the_connection_context(
    captured: Capture, serve_asgi: Serve
) -> None:
    """A WebSocket connection is a request too: its page (ws:// URL), user and request id."""
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, user_id=header("X-User"))

    @app.websocket("/chat")
    async def chat(socket: WebSocket) -> None:
        await socket.accept()
        text = await socket.receive_text()
        analytics.track(event="Chatted", properties={"text": text})
        await socket.send_text("ok")
        await socket.close()

    url = serve_asgi(app).replace("http://", "ws://") + "/chat?room=1"
    with connect(url, additional_headers={"X-User": "ada", "X-Request-ID": "ws-1"}) as socket:
        socket.send("hello")
        assert socket.recv(timeout=10) == "ok"
    [message] = captured.messages
    assert (message["userId"], message["properties"]["text"]) == ("ada", "hello")
    assert message["context"]["requestId"] == "ws-1"
    assert message["context"]["page"]["url"] == url
    assert message["context"]["page"]["search"] == "?room=1"
