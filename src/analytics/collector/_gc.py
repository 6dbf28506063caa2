"""Garbage-collector tuning while a collector runs (process-wide, undone when the last stops).

Each batch request materializes thousands of containers (``orjson.loads`` of 500 messages,
their enriched copies, the rows) that live only for the request. With CPython's default
gen-0 threshold (700 allocations) the cyclic collector runs several times per request and
each run walks the request's young objects again; measured under the ingest benchmark it
took 15-20% of the event loop's time. While a collector runs in the process:

- the gen-0 threshold is raised to :data:`GEN0_THRESHOLD` (gen-1/gen-2 keep their values or
  :data:`OLDER_THRESHOLD`, whichever is larger), so a collection runs every few dozen requests;
- :func:`gc.freeze` moves everything alive after start-up (modules, the application) to the
  permanent generation, so the collections that do run do not walk it.

Nothing is done at import. :func:`acquire` is called by ``CollectorServer.start()`` and
:func:`release` by ``stop()``; the first acquire saves the host's thresholds, the last
release restores them and unfreezes (only if nothing was frozen before the first acquire),
so a process that starts and stops collectors (tests, the demo) is left as it was.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["GEN0_THRESHOLD", "OLDER_THRESHOLD", "acquire", "active", "release"]

GEN0_THRESHOLD = 100_000
OLDER_THRESHOLD = 50

_lock = threading.Lock()
_users = 0
_saved: tuple[int, ...] | None = None
_froze = False


def acquire() -> None:
    """Tune the collector for ingest; the first call saves the current settings."""
    global _users, _saved, _froze
    with _lock:
        _users += 1
        if _users > 1:
            return
        _saved = gc.get_threshold()
        gen0, gen1, gen2 = (*_saved, 10, 10)[:3]
        gc.set_threshold(
            max(gen0, GEN0_THRESHOLD), max(gen1, OLDER_THRESHOLD), max(gen2, OLDER_THRESHOLD)
        )
        _froze = gc.get_freeze_count() == 0
        if _froze:
            gc.freeze()


def release() -> None:
    """Undo :func:`acquire`; the last call restores the saved settings."""
    global _users, _saved, _froze
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users > 0:
            return
        if _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
        if _froze:
            gc.unfreeze()
            _froze = False


def active() -> bool:
    """True while at least one collector holds the tuning."""
    with _lock:
        return _users > 0
