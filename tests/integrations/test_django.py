"""Django middleware, with a minimal Django project served on 127.0.0.1 two ways: a threaded
WSGI server (wsgiref) and uvicorn (Django's ASGI handler, sync and async views)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path

import analytics
from analytics.testing import Capture

from .conftest import CONCURRENT, AsyncGate, get, get_all

Serve = Callable[[Any], str]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

ANALYTICS = "analytics.integrations.django.AnalyticsMiddleware"


class User:
    """What ``django.contrib.auth`` would put on ``request.user`` (no database needed)."""

    def __init__(self, pk: int | None) -> None:
        self.pk = pk
        self.is_authenticated = pk is not None


class HeaderLogin:
    """Stands in for AuthenticationMiddleware: ``X-User-Pk`` says who is signed in."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        pk = request.headers.get("X-User-Pk")
        request.user = User(int(pk) if pk else None)  # type: ignore[assignment]
        return self.get_response(request)


def visitor_cookie(request: HttpRequest) -> str | None:
    """An anonymous-id resolver named by dotted path in the settings."""
    return request.COOKIES.get("visitor")


STATE: dict[str, Any] = {}


def buy(request: HttpRequest) -> HttpResponse:
    analytics.track(event="Bought", properties={"item": request.GET["item"]})
    return HttpResponse("ok")


def held(request: HttpRequest, n: int) -> HttpResponse:
    analytics.track(event="Before", properties={"n": n})
    STATE["barrier"].wait()
    analytics.track(event="After", properties={"n": n})
    return HttpResponse("ok")


async def held_async(request: HttpRequest, n: int) -> HttpResponse:
    analytics.track(event="Before", properties={"n": n})
    await STATE["gate"].wait()
    analytics.track(event="After", properties={"n": n})
    return HttpResponse("ok")


def named(request: HttpRequest, name: str) -> HttpResponse:
    analytics.track(event="Named", properties={"name": name})
    return HttpResponse("ok")


urlpatterns = [
    path("buy", buy),
    path("p/<str:name>", named),
    path("held/<int:n>", held),
    path("held-async/<int:n>", held_async),
]


@pytest.fixture(autouse=True)
def _state() -> Iterator[None]:
    STATE.clear()
    yield
    STATE.clear()


def wsgi(**options: Any) -> WSGIHandler:
    """Django's WSGI handler with our middleware configured by ``options`` (the settings dict)."""
    with override_settings(
        MIDDLEWARE=[f"{__name__}.HeaderLogin", ANALYTICS], ANALYTICS_MIDDLEWARE=options
    ):
        return WSGIHandler()


def test_event_carries_the_request_field_by_field(captured: Capture, serve_wsgi: Serve) -> None:
    """Default resolver: request.user.pk of the authenticated user."""
    base = serve_wsgi(wsgi())
    get(
        f"{base}/buy?item=tea",
        {
            "X-User-Pk": "42",
            "User-Agent": "Mozilla/5.0 (django test)",
            "Referer": "http://127.0.0.1/list",
            "Accept-Language": "pt-br,pt;q=0.8",
            "X-Request-ID": "dj-1",
        },
    )
    [message] = captured.messages
    assert message["userId"] == "42"
    context = message["context"]
    assert context["page"] == {
        "path": "/buy",
        "referrer": "http://127.0.0.1/list",
        "search": "?item=tea",
        "url": f"{base}/buy?item=tea",
    }
    assert context["userAgent"] == "Mozilla/5.0 (django test)"
    assert context["locale"] == "pt-BR"
    assert context["requestId"] == "dj-1"
    assert "ip" not in context


def test_path_is_percent_encoded_as_sent(captured: Capture, serve_wsgi: Serve) -> None:
    base = serve_wsgi(wsgi())
    get(f"{base}/p/caf%C3%A9%20x?q=%C3%A9", {"X-User-Pk": "1"})
    [message] = captured.messages
    assert message["properties"]["name"] == "café x"
    assert message["context"]["page"]["path"] == "/p/caf%C3%A9%20x"
    assert message["context"]["page"]["url"] == f"{base}/p/caf%C3%A9%20x?q=%C3%A9"


def test_a_host_django_refuses_does_not_fail_the_middleware(
    captured: Capture, serve_wsgi: Serve
) -> None:
    """ALLOWED_HOSTS is the app's to enforce (CommonMiddleware answers 400): we only record."""
    base = serve_wsgi(wsgi())
    get(f"{base}/buy?item=a", {"X-User-Pk": "1", "Host": "evil.example"})
    [message] = captured.messages
    assert message["context"]["page"]["url"] == "http://evil.example/buy?item=a"


def test_anonymous_id_by_dotted_path_and_ip_behind_a_proxy(
    captured: Capture, serve_wsgi: Serve
) -> None:
    base = serve_wsgi(
        wsgi(anonymous_id=f"{__name__}.visitor_cookie", capture_ip=True, proxy_count=1)
    )
    get(f"{base}/buy?item=a", {"Cookie": "visitor=v-7", "X-Forwarded-For": "198.51.100.9"})
    get(f"{base}/buy?item=b", {"Cookie": "visitor=v-8"})
    forwarded, direct = captured.messages
    assert (forwarded["anonymousId"], forwarded["context"]["ip"]) == ("v-7", "198.51.100.9")
    assert (direct["anonymousId"], direct["context"]["ip"]) == ("v-8", "127.0.0.1")
    assert "userId" not in forwarded


def test_user_resolver_can_be_turned_off(captured: Capture, serve_wsgi: Serve) -> None:
    base = serve_wsgi(wsgi(user_id=None, anonymous_id=f"{__name__}.visitor_cookie"))
    get(f"{base}/buy?item=a", {"Cookie": "visitor=v-1", "X-User-Pk": "5"})
    [message] = captured.messages
    assert "userId" not in message
    assert message["anonymousId"] == "v-1"


def test_wrong_settings_fail_when_django_loads_the_middleware() -> None:
    with pytest.raises(ImproperlyConfigured, match="capture_IP"):
        wsgi(capture_IP=True)
    with pytest.raises(ImproperlyConfigured, match="proxy_count"):
        wsgi(proxy_count="1")


def test_concurrent_wsgi_requests_keep_their_own_user(captured: Capture, serve_wsgi: Serve) -> None:
    STATE["barrier"] = threading.Barrier(CONCURRENT, timeout=10)
    base = serve_wsgi(wsgi())
    get_all([(f"{base}/held/{n}", {"X-User-Pk": str(100 + n)}) for n in range(CONCURRENT)])
    assert len(captured.messages) == 2 * CONCURRENT
    request_ids = set()
    for message in captured.messages:
        n = message["properties"]["n"]
        assert message["userId"] == str(100 + n)
        assert message["context"]["page"]["path"] == f"/held/{n}"
        request_ids.add((n, message["context"]["requestId"]))
    assert len(request_ids) == CONCURRENT  # one id per request, shared by its two events


def test_asgi_sync_and_async_views_keep_their_own_user(
    captured: Capture, serve_asgi: Serve
) -> None:
    """Under uvicorn: async views in the loop, sync views in Django's thread, all in flight."""
    STATE["barrier"] = threading.Barrier(CONCURRENT // 2, timeout=10)
    STATE["gate"] = AsyncGate(CONCURRENT // 2)
    with override_settings(
        MIDDLEWARE=[f"{__name__}.HeaderLogin", ANALYTICS],
        ANALYTICS_MIDDLEWARE={"capture_ip": True},
    ):
        app = ASGIHandler()
    base = serve_asgi(app)
    get_all(
        [
            (f"{base}/{'held-async' if n % 2 else 'held'}/{n}", {"X-User-Pk": str(n + 1)})
            for n in range(CONCURRENT)
        ]
    )
    assert len(captured.messages) == 2 * CONCURRENT
    for message in captured.messages:
        n = message["properties"]["n"]
        assert message["userId"] == str(n + 1)
        assert message["context"]["page"]["path"].endswith(f"/{n}")
        assert message["context"]["ip"] == "127.0.0.1"
