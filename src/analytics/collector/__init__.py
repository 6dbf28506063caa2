"""analytics.collector: a local Segment-compatible tracking API that stores events in SQLite.

Install with the ``collector`` extra (aiohttp). Start it from Python::

    from analytics.collector import CollectorServer

    with CollectorServer("events.db", port=0) as server:   # 127.0.0.1, any write key
        ...  # send to server.url
        server.store.events(type="track")                 # what was stored, newest last

or from the command line: ``analytics serve`` and ``analytics events``. ``db`` may also be a
``postgresql://`` URL (the ``postgres`` extra): then any number of collectors, on any number of
hosts, share that database (``._pg``).

What it answers (details in the module docstrings):

- 200 ``{"success": true, "received", "stored", "duplicates", "refused": [...]}`` once the
  request's messages are committed; invalid messages are refused one by one (listed by index
  with a code and a reason) and the valid ones are stored. An empty batch is 200.
- 400 invalid JSON or UTF-8, wrong body shape, wrong batch-level field types, a body over
  32,768 bytes (single-event paths) or 512,000 bytes (batch paths) after decompression, more
  than 2,500 messages in a batch (the whole batch is refused), a bad gzip/deflate stream.
- 401 missing or unknown write key; 408 body not received within ``read_timeout``;
  415 a body neither JSON nor labelled JSON, or an unknown Content-Encoding; 503 +
  ``Retry-After`` when the store cannot commit (disk full, database locked): nothing of that
  request is stored, retry it. Any Content-Type is accepted for a JSON body, and the write key
  is checked first (a wrong Basic auth key is a 401 whatever else is wrong).

Duplicates by (write key, ``messageId``) are acknowledged and not stored twice.

Process-wide effect: while a ``CollectorServer`` runs, the cyclic garbage collector of its
process is tuned for ingest (gen-0 threshold 100,000 and ``gc.freeze()`` of the start-up heap);
the last ``stop()`` restores it. ``CollectorServer(..., tune_gc=False)`` leaves it alone.
"""

from __future__ import annotations

from analytics.collector._limits import DEFAULT_LIMITS, Limits
from analytics.collector._run import run
from analytics.collector._server import CollectorServer
from analytics.collector._stats import Counters
from analytics.collector._store import SQLiteStore, Store, StoreError

__all__ = [
    "DEFAULT_LIMITS",
    "CollectorServer",
    "Counters",
    "Limits",
    "SQLiteStore",
    "Store",
    "StoreError",
    "run",
]
