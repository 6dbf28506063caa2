"""The live debugger page: ``GET /`` (the page), ``/debugger/*`` (its assets, its stream).

The page is hand-written HTML, CSS and JavaScript in ``collector/static/`` (package data: no
CDN, no build step). Its stream, ``GET /debugger/stream``, is Server-Sent Events: one ``batch``
message per tick of the feed (:mod:`._feed`) with the new stored events, the new refusals
(:mod:`._refusal_ring`) and the counters; the SSE id lets a reconnecting page resume.

Ingestion never waits for a viewer. Each viewer has a bounded queue of pending messages (in count and in bytes);
the feed puts into it without waiting, and a viewer whose queue is full (a stalled or slow page) is
dropped: its connection is aborted and its page reconnects with ``Last-Event-ID``, resuming
where it stopped. The hooks the ingest handler calls (:meth:`Debugger.observe`,
:meth:`Debugger.rejected`) only touch the refusal ring, and only for refusals and duplicates.

Who may open the page and the stream: :mod:`._admin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from analytics._wire import format_timestamp
from analytics.collector._admin import AdminAccess
from analytics.collector._feed import (
    BACKLOG,
    INTERVAL,
    Cursor,
    Read,
    Tail,
    Tailable,
    encode,
    parse_event_id,
    read_range,
)
from analytics.collector._messages import Parsed, RequestError
from analytics.collector._refusal_ring import SLOTS, RefusalRing, key_label, refusal_field

__all__ = ["Debugger"]

log = logging.getLogger("analytics.collector")

QUEUE_MESSAGES = 50  # pending SSE messages per viewer (10 s of ticks) before it is dropped
QUEUE_BYTES = 4 << 20  # or this many bytes pending (a flood fills it in a few ticks)
KEEPALIVE = 15.0  # seconds between comments on an idle stream
_STATS_EVERY = 5  # ticks: an idle stream still gets the counters once a second
_ASSETS = {
    "/": ("debugger.html", "text/html"),
    "/debugger/app.js": ("debugger.js", "text/javascript"),
    "/debugger/app.css": ("debugger.css", "text/css"),
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("analytics.collector").joinpath("static").joinpath(name).read_bytes()


def _now() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def _items(body: bytes, single_type: str | None) -> tuple[list[Any], str | None]:
    """The items of an already validated body and its top-level ``writeKey``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [], None
    if type(payload) is not dict:
        return [], None
    key = payload.get("writeKey")
    items = [payload] if single_type is not None else payload.get("batch")
    return (items if type(items) is list else []), (key if type(key) is str else None)


def _shown(item: Any) -> Any:
    """A refused item as the page may show it: never its ``writeKey``."""
    if type(item) is dict and "writeKey" in item:
        return {k: v for k, v in item.items() if k != "writeKey"}
    return item


class _Viewer:
    """One open stream: its queue and its connection (aborted when the queue overflows)."""

    __slots__ = ("pending", "queue", "transport")

    def __init__(self, transport: asyncio.Transport | None, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.transport = transport
        self.pending = 0  # bytes queued, not yet written

    def offer(self, message: bytes) -> bool:
        """Queue ``message`` without waiting; False (and the viewer is cut off) when its queue
        is full or holds :data:`QUEUE_BYTES` already."""
        if self.pending + len(message) > QUEUE_BYTES:
            self.close(abort=True)
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.close(abort=True)
            return False
        self.pending += len(message)
        return True

    async def next(self) -> bytes | None:
        """The next message to write (None: the stream ends)."""
        message = await self.queue.get()
        if message is not None:
            self.pending -= len(message)
        return message

    def close(self, *, abort: bool = False) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.pending = 0
        self.queue.put_nowait(None)
        if abort and self.transport is not None:
            self.transport.abort()


class Debugger:
    """The page, its stream and the hooks of the ingest handler, for one process.

    Args:
        store: where stored events are read back from (``last_seq``/``tail``/``type_counts``);
            a store without them gives a page with refusals only.
        ring: the refusal ring, shared by the processes of ``--workers``.
        admin: who may open the page.
        interval: seconds between reads of the store while someone watches.
        queue_messages: SSE messages a viewer may have pending before it is dropped.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        store: object,
        ring: RefusalRing,
        admin: AdminAccess,
        *,
        interval: float = INTERVAL,
        queue_messages: int = QUEUE_MESSAGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store if isinstance(store, Tailable) else None
        self.ring = ring
        self._admin = admin
        self.interval = interval
        self.queue_messages = queue_messages
        self._tail = Tail(ring, clock)
        self._viewers: set[_Viewer] = set()
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self.dropped = 0  # viewers cut off for falling behind (a counter for tests and logs)

    def address(self, url: str) -> str:
        """Where the page is, as ``serve`` prints it on start."""
        mode = self._admin.mode
        if mode == "off":
            return "off (give --admin-token to open it on this address)"
        return f"{url}/" + (" (needs the admin token)" if mode == "token" else "")

    # -- hooks of the ingest handler (event loop thread; must stay cheap) -------------------

    def observe(
        self, parsed: Parsed, stored: int, body: bytes, single_type: str | None, key: str | None
    ) -> None:
        """Note a request's refusals and duplicates (nothing to do for a clean request).

        Never raises: the request's events are committed already, and the page must never
        turn a stored request into an error.
        """
        try:
            self._observe(parsed, stored, body, single_type, key)
        except Exception:
            log.exception("the debugger could not note a request's refusals")

    def _observe(
        self, parsed: Parsed, stored: int, body: bytes, single_type: str | None, key: str | None
    ) -> None:
        duplicates = len(parsed.rows) - stored
        if not parsed.refused:
            if duplicates:
                self.ring.add([], duplicates=duplicates)
            return
        items, body_key = _items(body, single_type)
        records = []
        at = _now()
        for refusal in parsed.refused:
            item = items[refusal.index] if refusal.index < len(items) else None
            own = item.get("writeKey") if type(item) is dict else None
            records.append(
                {
                    "at": at,
                    "status": 200,
                    "index": refusal.index,
                    "code": refusal.code,
                    "reason": refusal.reason,
                    "field": refusal_field(refusal.code, refusal.reason),
                    "key": key_label(key or body_key or (own if type(own) is str else None)),
                    "message": _shown(item),
                }
            )
        self.ring.add(records, duplicates=duplicates)

    def rejected(self, error: RequestError) -> None:
        """Note a request refused whole (bad JSON, unknown key, too large ...); never raises."""
        record = {
            "at": _now(),
            "status": error.status,
            "index": None,
            "code": error.code,
            "reason": error.message,
            "field": refusal_field(error.code, error.message),
            "key": None,
            "message": None,
        }
        try:
            self.ring.add([record])
        except Exception:
            log.exception("the debugger could not note a refused request")

    # -- routes -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve the page at ``/`` and its assets and stream under ``/debugger/``."""
        for path in _ASSETS:
            app.router.add_get(path, self._asset)
        app.router.add_get("/debugger/stream", self._stream)
        app.on_shutdown.append(self._on_shutdown)

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        """The page (admin only; the token form when it is missing) or a style or script
        (no data in them: public unless the admin pages are off, so the form is styled)."""
        name, content_type = _ASSETS[request.path]
        status = 200
        if request.path != "/":
            if self._admin.mode == "off":
                raise web.HTTPNotFound()
        elif (login := self._admin.login(request)) is not None:
            return login
        else:
            try:
                self._admin.require(request)
            except web.HTTPUnauthorized:
                name, status = "login.html", 401
        return web.Response(
            status=status, body=_asset(name), content_type=content_type, headers=_HEADERS
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._admin.require(request)
        asked = parse_event_id(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        # The position comes first, the headers after: a page says "Live" when they arrive,
        # and every event stored from then on must reach it (headers first, a slow read of the
        # newest seq let a page lose all but BACKLOG of the events stored meanwhile).
        await self._ensure_tailing()
        viewer = _Viewer(request.transport, self.queue_messages)
        live = self._tail.cursor
        self._viewers.add(viewer)
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            await response.write(await self._catch_up(asked, live))
            await self._pump(viewer, response)
        except (ConnectionError, RuntimeError):
            log.debug("a debugger viewer went away")
        finally:
            self._viewers.discard(viewer)
        return response

    async def _pump(self, viewer: _Viewer, response: web.StreamResponse) -> None:
        while True:
            try:
                message = await asyncio.wait_for(viewer.next(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if message is None:
                return
            await response.write(message)

    async def _catch_up(self, asked: Cursor | None, live: Cursor) -> bytes:
        """What a new stream gets first: from its ``Last-Event-ID`` (or the recent backlog
        and the whole ring) up to where the live messages start."""
        if asked is None:
            asked = Cursor(max(0, live.seq - BACKLOG), max(0, live.pos - SLOTS))
        read = Read(live.seq, [])
        if self._store is not None and asked.seq < live.seq:
            read = await asyncio.to_thread(read_range, self._store, asked.seq, live.seq)
        _, refused = self.ring.since(min(asked.pos, live.pos))
        refused = [record for record in refused if record["pos"] <= live.pos]
        return encode(live, read, refused, self._tail.stats())

    # -- the feed ---------------------------------------------------------------------------

    async def _ensure_tailing(self) -> None:
        if self._task is not None:
            return
        newest = await asyncio.to_thread(self._store.last_seq) if self._store is not None else 0
        if self._task is None:
            self._tail.restart(newest)
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._viewers:
                await asyncio.sleep(self.interval)
                try:
                    await self._tick()
                except Exception:
                    log.exception("the debugger feed could not read the store")
        finally:
            self._task = None
            self._ticks = 0

    async def _tick(self) -> None:
        self._ticks += 1
        read = Read(self._tail.cursor.seq, [])
        if self._store is not None:
            read = await asyncio.to_thread(read_range, self._store, self._tail.cursor.seq)
        cursor, refused = self._tail.advance(read)
        if not (read.rows or read.skipped or refused or self._ticks % _STATS_EVERY == 0):
            return
        message = encode(cursor, read, refused, self._tail.stats())
        for viewer in list(self._viewers):
            if not viewer.offer(message):
                self.dropped += 1
                self._viewers.discard(viewer)
                log.info("debugger viewer dropped: %d messages behind", self.queue_messages)

    async def _on_shutdown(self, _app: web.Application) -> None:
        for viewer in list(self._viewers):
            viewer.close()
        self._viewers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
