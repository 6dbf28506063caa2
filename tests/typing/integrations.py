"""The README's integration examples must type-check under mypy --strict with the frameworks'
own types (Starlette's add_middleware, Flask's app, Django's HttpRequest)."""

from __future__ import annotations

from django.http import HttpRequest
from fastapi import FastAPI
from flask import Flask, Request, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.types import Scope

from analytics.integrations import celery as analytics_celery
from analytics.integrations.asgi import AnalyticsMiddleware
from analytics.integrations.django import AnalyticsMiddleware as DjangoMiddleware
from analytics.integrations.django import authenticated_user_pk
from analytics.integrations.flask import Analytics


async def user_from_scope(scope: Scope) -> str | None:
    return StarletteRequest(scope).headers.get("X-User-Id")


def asgi_apps() -> None:
    app = FastAPI()
    app.add_middleware(AnalyticsMiddleware, user_id=user_from_scope, capture_ip=True)
    Starlette(middleware=[Middleware(AnalyticsMiddleware, proxy_count=1)])
    wrapped = AnalyticsMiddleware(app, anonymous_id=lambda scope: scope.get("client"))
    print(wrapped)


def flask_app() -> Flask:
    app = Flask(__name__)

    def user(request: Request) -> object:
        return session.get("user_id") or request.headers.get("X-User-Id")

    Analytics(app, user_id=user, capture_ip=False)
    return app


def django_pieces(request: HttpRequest) -> object:
    print(DjangoMiddleware.async_capable)
    return authenticated_user_pk(request)


def celery_setup() -> None:
    analytics_celery.connect()
    analytics_celery.disconnect()
