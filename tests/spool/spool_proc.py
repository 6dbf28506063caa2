"""A separate process that uses a spool, driven by the tests in this directory.

Usage: ``python spool_proc.py COMMAND PATH``, with COMMAND one of:

- ``drain``: print ``ready``, wait for a line on stdin, then lease and ack chunks until none is
  left, printing each chunk id and its first item; print ``done``.
- ``hold``: lease one chunk, print its id, then wait for stdin to close (the lease stays held
  by this live process until then); exit without releasing.
- ``die``: lease one chunk, print its id, and ``os._exit(0)`` at once (no close, no release).
"""

from __future__ import annotations

import os
import sys

from analytics._spool import Spool


def main(command: str, path: str) -> None:
    spool = Spool(path)
    if command == "drain":
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(100_000):  # bounded: far more than any test appends
            got = spool.lease()
            if got is None:
                break
            spool.ack(got[0])
            print(got[0], got[1][0].decode(), flush=True)
        print("done", flush=True)
        spool.close()
        return
    got = spool.lease()
    print(-1 if got is None else got[0], flush=True)
    if command == "die":
        os._exit(0)
    sys.stdin.read()  # hold the lease until the test closes our stdin
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
