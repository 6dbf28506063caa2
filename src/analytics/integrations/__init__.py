"""Web framework and task queue integrations: request context that fills itself in.

Each submodule is imported only by the application that uses it, and imports its framework
then; ``import analytics`` imports none of them.

- `analytics.integrations.asgi`: ``AnalyticsMiddleware(app)`` for Starlette, FastAPI or any
  ASGI application;
- `analytics.integrations.django`: ``AnalyticsMiddleware`` for Django's ``MIDDLEWARE``;
- `analytics.integrations.flask`: ``Analytics(app)``;
- `analytics.integrations.celery`: ``connect()``, so a task carries the context of the request
  that enqueued it.

While a request is handled, every event tracked (by any client) gets ``context.page``,
``context.userAgent``, ``context.locale``, ``context.requestId`` and, when the application asks
for it, ``context.ip``, and the user the application's resolver names (`analytics.context`).
"""
