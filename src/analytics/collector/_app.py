"""The aiohttp application: routes, the ingest handler and JSON responses.

Routes (SPEC 1.1): ``POST /v1/{identify,track,page,screen,group,alias}`` and their one-letter
aliases ``/v1/{i,t,p,s,g,a}`` take one message (its type comes from the path);
``POST /v1/{batch,import,b}`` take ``{"batch": [...], ...}``; a trailing slash is accepted
(analytics-java posts to ``/v1/import/``). ``POST /v1/m`` (analytics.js's sampled metrics) is
not served (404, which analytics.js ignores): it took bodies with no key, size or time limit,
and nothing here reads those metrics. ``GET /health`` (and ``/v1/health``) answers ``{"status": "ok", "pid", "store":
{"store": "sqlite" | "postgresql", "database", "reachable"}, ...counters}``: the counters of the
process that answered (``--workers`` runs several); 503 with ``"status": "store_unreachable"``
when the store cannot be reached (the database is named without its password).

An ingest request goes: Basic auth key (a bad key is refused before anything else, so a wrong
key is a 401 whatever the body) -> Content-Encoding check -> bounded, timed body read -> JSON ->
envelope -> per-message validation and enrichment -> the writer thread's group commit -> ``200
{"success": true, "received": n, "stored": k, "duplicates": d, "refused": [{"index", "code",
"reason"}...]}``. Refused messages are also logged, rate-limited (:mod:`._refusals`).

Any Content-Type is accepted when the (decoded) body is the JSON the route expects:
@rudderstack/rudder-sdk-node 3.x gzips its JSON and its HTTP library then labels it
``application/x-www-form-urlencoded``, and RudderStack's gateway reads it. A body that is not
JSON is a 415 when its Content-Type did not claim JSON, else a 400.

Errors are ``{"success": false, "code", "message", "error"}`` with status 400 (bad body or
limits), 401 (write key), 404/405 (route), 408 (body too slow), 415 (a body that is neither
JSON nor labelled JSON, or an unknown Content-Encoding),
503 + ``Retry-After`` (the store could not commit; nothing of the request was kept).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from analytics.collector._admin import AdminAccess
from analytics.collector._auth import KeyPolicy, basic_auth_key
from analytics.collector._body import encoding_of, read_body
from analytics.collector._debugger import Debugger
from analytics.collector._guard import RETRY_AFTER_SECONDS, BodyBudget, Guard, error_body
from analytics.collector._limits import Limits
from analytics.collector._logs import request_fields
from analytics.collector._messages import Parsed, RequestError, parse_request
from analytics.collector._metrics import CollectorMetrics, route_of
from analytics.collector._origin import LocalOnly
from analytics.collector._refusals import RefusalLog
from analytics.collector._stats import Stats
from analytics.collector._store import Message, StoreError
from analytics.collector._writer import GroupCommitWriter

__all__ = ["STATE", "AppState", "make_app"]

log = logging.getLogger("analytics.collector")

SINGLE_PATHS = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
BATCH_PATHS = ("batch", "import", "b")
_JSON_TYPES = ("application/json", "text/plain")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class AppState:
    """What the handlers share: the writer, the key policy, limits, timeouts and counters;
    ``admin`` decides who may open the admin pages (debugger, metrics)."""

    writer: GroupCommitWriter
    policy: KeyPolicy
    limits: Limits
    read_timeout: float
    stats: Stats = field(default_factory=Stats)
    refusals: RefusalLog = field(default_factory=RefusalLog)
    clock: Callable[[], datetime] = _utcnow
    admin: AdminAccess = field(default_factory=AdminAccess)
    guard: Guard | None = None
    local: LocalOnly | None = None
    debugger: Debugger | None = None  # the live page (._debugger); None serves no page
    metrics: CollectorMetrics | None = None


STATE = web.AppKey("analytics_collector_state", AppState)


def json_response(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The error body SPEC 4.1 recommends (Python, Ruby and Java clients can all read it)."""
    return json_response(status, error_body(code, message), **headers)


def _not_json(request: web.Request, exc: RequestError) -> RequestError:
    """A body that is not JSON: 415 when its Content-Type did not claim JSON, else ``exc``."""
    mime = request.content_type
    if "Content-Type" not in request.headers or mime in _JSON_TYPES or mime.endswith("+json"):
        return exc
    return RequestError(
        415,
        "unsupported_media_type",
        f"body is not JSON (Content-Type: {mime}); any Content-Type is accepted for a JSON body",
    )


def _commit(state: AppState, rows: list[Message]) -> Awaitable[int]:
    """Hand ``rows`` to the writer thread; the future resolves after their commit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def settle(result: int | StoreError) -> None:
        if future.done():
            return
        if isinstance(result, StoreError):
            future.set_exception(result)
        else:
            future.set_result(result)

    def done(result: int | StoreError) -> None:
        # Runs on the writer thread; the loop may be gone if the server was torn down.
        try:
            loop.call_soon_threadsafe(settle, result)
        except RuntimeError:
            log.debug("collector loop closed before a commit was reported")

    try:
        state.writer.submit(rows, done)
    except RuntimeError as exc:
        raise StoreError(str(exc)) from None
    return future


def _parse(
    request: web.Request, state: AppState, body: bytes, single_type: str | None, key: str | None
) -> Parsed:
    try:
        parsed = parse_request(
            body,
            single_type=single_type,
            header_key=key,
            now=state.clock(),
            policy=state.policy,
            limits=state.limits,
        )
    except RequestError as exc:
        if exc.code in ("invalid_json", "invalid_utf8"):
            raise _not_json(request, exc) from None
        raise
    state.refusals.note(request.path, parsed.refused)
    return parsed


async def _ingest(
    request: web.Request, state: AppState, single_type: str | None
) -> tuple[web.Response, int]:
    """Answer an ingest request; also return how many messages its body held."""
    header_key = basic_auth_key(request.headers.get("Authorization"))
    if header_key is not None:
        state.policy.require(header_key)
    encoding = encoding_of(request.headers.get("Content-Encoding"))
    batch = single_type is None
    wire_cap = state.limits.wire_limit(batch=batch)
    budget = state.guard.budget if state.guard is not None else BodyBudget()
    with budget.reserve(min(request.content_length or wire_cap, wire_cap)):
        body = await read_body(
            request.content,
            content_length=request.content_length,
            encoding=encoding,
            cap=state.limits.body_limit(batch=batch),
            wire_cap=wire_cap,
            timeout=state.read_timeout,
        )
    parsed = _parse(request, state, body, single_type, header_key)
    stored = await _commit(state, parsed.rows) if parsed.rows else 0
    if state.debugger is not None:
        state.debugger.observe(parsed, stored, body, single_type, header_key)
    return _accepted(state, parsed, stored), parsed.received


def _accepted(state: AppState, parsed: Parsed, stored: int) -> web.Response:
    duplicates = len(parsed.rows) - stored
    state.stats.add(
        requests=1,
        received=parsed.received,
        stored=stored,
        duplicates=duplicates,
        refused=len(parsed.refused),
    )
    if state.metrics is not None:
        codes = (refusal.code for refusal in parsed.refused)
        state.metrics.messages(parsed.received, stored, duplicates, codes)
    body: dict[str, Any] = {
        "success": True,
        "received": parsed.received,
        "stored": stored,
        "duplicates": duplicates,
        "refused": [refusal.as_dict() for refusal in parsed.refused],
    }
    return json_response(200, body)


async def _handle(request: web.Request, single_type: str | None) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    messages: int | None = None
    try:
        response, messages = await _ingest(request, state, single_type)
    except RequestError as exc:
        state.stats.add(requests=1, rejected=1)
        if state.debugger is not None:
            state.debugger.rejected(exc)
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else {}
        response = error_response(exc.status, exc.code, exc.message, **retry)
        if exc.status in (408, 503):  # the body was not read (whole)
            response.force_close()
    except StoreError as exc:
        state.stats.add(requests=1, failed=1)
        response = error_response(
            503,
            "store_unavailable",
            f"the events could not be stored, retry later ({exc})",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except ConnectionError:
        state.stats.add(requests=1, aborted=1)
        log.debug(
            "%s %s: client disconnected before the body was read", request.method, request.path
        )
        raise
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug(
        "%s %s -> %d in %.1f ms",
        request.method,
        request.path,
        response.status,
        elapsed_ms,
        extra=request_fields(route_of(request), response.status, elapsed_ms, messages),
    )
    return response


def _ingest_route(single_type: str | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _handle(request, single_type)

    return handler


async def _health(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    # The store's check may block (a PostgreSQL connection): off the event loop.
    store = await asyncio.get_running_loop().run_in_executor(None, state.writer.store.health)
    ok = bool(store["reachable"])
    counters = state.stats.snapshot().as_dict()
    body = {"status": "ok" if ok else "store_unreachable", "success": ok, "pid": os.getpid()}
    return json_response(200 if ok else 503, {**body, "store": store, **counters})


@web.middleware
async def _defences(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An open collector's Host/Origin check (._origin); the request is marked in progress
    for its connection's deadlines (._guard)."""
    state = request.app[STATE]
    if state.local is not None:
        try:
            state.local.check(request.headers)
        except RequestError as exc:
            state.stats.add(requests=1, rejected=1)
            return error_response(exc.status, exc.code, exc.message)
    if state.guard is None:
        return await handler(request)
    with state.guard.busy(request.transport):
        return await handler(request)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text 404/405 into the JSON error body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


def make_app(state: AppState) -> web.Application:
    """Build the application around ``state``."""
    counting = [state.metrics.middleware()] if state.metrics is not None else []
    app = web.Application(middlewares=[*counting, _defences, _json_errors])
    app[STATE] = state
    routes: list[tuple[str, Handler]] = [
        (name, _ingest_route(t)) for name, t in SINGLE_PATHS.items()
    ]
    routes += [(name, _ingest_route(None)) for name in BATCH_PATHS]
    for name, handler in routes:
        app.router.add_post(f"/v1/{name}", handler)
        app.router.add_post(f"/v1/{name}/", handler)
    if state.debugger is not None:
        state.debugger.add_routes(app)
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/health", _health)
    if state.metrics is not None:
        app.router.add_get("/metrics", state.metrics.handler(state.admin.require))
    return app
