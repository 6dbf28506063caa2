"""What the framework integrations add to each request (no network: the app is called directly).

    .venv/bin/python bench/integrations_bench.py [--requests 20000] [--rounds 5]

For each framework, the same app with and without our integration handles the same request
(with User-Agent, Referer, Accept-Language and a query string, a user resolver, no event
tracked), and we report the median microseconds per request over the rounds and the added cost.
ASGI: a bare ASGI app awaited in one loop. Flask and Django: their WSGI callables on a fixed
environ. Needs the dev extra (fastapi/flask/django installed).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) bench",
    "Referer": "https://example.com/shop",
    "Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8",
    "X-User": "ada",
}


def asgi_pair() -> tuple[Callable[[], Any], Callable[[], Any]]:
    from analytics.integrations.asgi import AnalyticsMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {
        "type": "http",
        "scheme": "http",
        "path": "/buy",
        "raw_path": b"/buy",
        "query_string": b"item=tea",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        + [(b"host", b"127.0.0.1:8000")],
    }

    def user(scope: Any) -> str:
        return "ada"

    wrapped = AnalyticsMiddleware(app, user_id=user)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    def runner(target: Any) -> Callable[[int], None]:
        def run(n: int) -> None:
            async def many() -> None:
                for _ in range(n):
                    await target(dict(scope), receive, send)

            asyncio.run(many())

        return run

    return runner(app), runner(wrapped)


def wsgi_runner(app: Any) -> Callable[[int], None]:
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(
        path="/buy", query_string="item=tea", headers=HEADERS, base_url="http://127.0.0.1:8000"
    ).get_environ()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    def run(n: int) -> None:
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close:
                close()

    return run


def flask_pair() -> tuple[Callable[[int], None], Callable[[int], None]]:
    from flask import Flask, request

    from analytics.integrations.flask import Analytics

    def make(with_ours: bool) -> Flask:
        app = Flask(__name__)
        if with_ours:
            Analytics(app, user_id=lambda r: r.headers.get("X-User"))
        app.add_url_rule("/buy", "buy", lambda: request.args["item"])
        return app

    return wsgi_runner(make(False)), wsgi_runner(make(True))


def django_pair() -> tuple[Callable[[int], None], Callable[[int], None]]:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.test import override_settings
    from django.urls import path

    module = sys.modules[__name__]
    module.urlpatterns = [path("buy", lambda request: HttpResponse("ok"))]  # type: ignore[attr-defined]
    if not settings.configured:
        settings.configure(
            SECRET_KEY="bench", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[]
        )
        django.setup()

    def make(middleware: list[str]) -> WSGIHandler:
        with override_settings(
            MIDDLEWARE=middleware,
            ANALYTICS_MIDDLEWARE={"user_id": lambda r: r.META.get("HTTP_X_USER")},
        ):
            return WSGIHandler()

    ours = ["analytics.integrations.django.AnalyticsMiddleware"]
    return wsgi_runner(make([])), wsgi_runner(make(ours))


def measure(run: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    run(n)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'framework':<8} {'bare µs':>9} {'with ours µs':>13} {'added µs':>9} {'ratio':>6}")
    for name, pair in (("asgi", asgi_pair), ("flask", flask_pair), ("django", django_pair)):
        bare, ours = pair()
        bare(200)
        ours(200)  # warm up
        rows = [
            (measure(bare, args.requests), measure(ours, args.requests)) for _ in range(args.rounds)
        ]
        b = statistics.median(r[0] for r in rows)
        o = statistics.median(r[1] for r in rows)
        print(f"{name:<8} {b:>9.2f} {o:>13.2f} {o - b:>9.2f} {o / b:>5.2f}x")


if __name__ == "__main__":
    main()
