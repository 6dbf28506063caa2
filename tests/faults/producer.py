"""The producer of the fault suite: a small program using only the public client API.

It tracks ``--count`` events at ``--rate`` events/s (0: as fast as it can), appending
``messageId<TAB>time.time()`` of every accepted event to ``--ids`` (one ``write()`` per line,
so forked children share the file safely), prints ``tracked N`` every ``--every`` events,
and ends as ``--end`` says:

- ``flush``: ``client.flush(timeout=...)`` then exit; prints ``flushed True|False``.
- ``exit``: return from main without flush or shutdown (the atexit hook may drain).
- ``hang``: wait on stdin after tracking (the test SIGKILLs it).

``--fork N`` forks N children after the first ``--count`` events; the parent and each child
then track ``--count`` more events each. Client log lines go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import analytics


def parse() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--end", choices=["flush", "exit", "hang"], default="flush")
    p.add_argument("--fork", type=int, default=0)
    p.add_argument("--flush-timeout", type=float, default=20.0)
    p.add_argument("--exit-timeout", type=float, default=5.0)
    p.add_argument("--flush-at", type=int, default=100)
    p.add_argument("--flush-after", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--max-retries", type=int, default=10)
    p.add_argument("--spool", default=None)
    p.add_argument("--spool-interval", type=float, default=None)
    p.add_argument("--tag", default="p")
    return p.parse_args()


def make_client(args: argparse.Namespace) -> analytics.Client:
    """The client under test, with the options the test asked for."""
    options: dict[str, object] = {}
    if args.spool:
        options["spool"] = args.spool
    if args.spool_interval is not None:
        options["spool_interval"] = args.spool_interval
    return analytics.Client(
        "fault-key",
        host=args.host,
        flush_at=args.flush_at,
        flush_after=args.flush_after,
        timeout=args.timeout,
        max_retries=args.max_retries,
        exit_timeout=args.exit_timeout,
        **options,
    )


def track(client: analytics.Client, args: argparse.Namespace, fd: int, who: str) -> None:
    """Track ``--count`` events, paced, recording each accepted messageId."""
    started = time.monotonic()
    for i in range(args.count):
        if args.rate:
            ahead = started + i / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load, not synchronisation
        ok, msg = client.track(
            user_id=f"{who}-{i % 50}", event="Fault Test", properties={"i": i, "who": who}
        )
        if ok:
            os.write(fd, f"{msg['messageId']}\t{time.time():.6f}\n".encode())
        if (i + 1) % args.every == 0:
            print(f"tracked {i + 1}", flush=True)


def main() -> int:
    """Run as the command line says; the exit code is 0 unless flush failed."""
    args = parse()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    fd = os.open(args.ids, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    client = make_client(args)
    who = f"{args.tag}{os.getpid()}"
    track(client, args, fd, who)
    children = []
    for _ in range(args.fork):
        pid = os.fork()
        if pid == 0:
            children = []
            who = f"{args.tag}{os.getpid()}"
            break
        children.append(pid)
    if args.fork:
        track(client, args, fd, who)
    print("tracked all", flush=True)
    code = 0
    if args.end == "flush":
        ok = client.flush(timeout=args.flush_timeout)
        print(f"flushed {ok}", flush=True)
        code = 0 if ok else 3
    elif args.end == "hang":
        sys.stdin.read()
    for pid in children:
        _, status = os.waitpid(pid, 0)
        code = code or os.waitstatus_to_exitcode(status)
    return code


if __name__ == "__main__":
    sys.exit(main())
