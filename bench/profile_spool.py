"""Where the time goes with the spool on: a wall-clock py-spy profile (--idle: waits included)
of our client's throughput run with `spool=PATH`, summarized per thread (caller, sender,
spooler) by our functions, inclusive. Writes docs/profile-spool.txt.

    python profile_spool.py --n 100000

Prints one line `RESULT {json}`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from profile_client import DOCS, in_loop, parse, pyspy, short

Stacks = list[tuple[list[str], int]]


def thread_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "_run_spooler (" in joined:
        return "spooler"
    if "Sender._run (" in joined:
        return "sender"
    return "caller" if in_loop(frames) else "other"


def inclusive(stacks: Stacks, thread: str) -> tuple[Counter[str], int]:
    """Samples under each of our frames (each counted once per stack), for one thread."""
    c: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        if thread_of(frames) != thread:
            continue
        total += count
        seen = set()
        for f in frames:
            if "analytics/" in f or f.startswith(("Condition.wait", "Event.wait")):
                name = f.split(" (")[0]
                if name not in seen:
                    seen.add(name)
                    c[name] += count
    return c, total


def leaves(stacks: Stacks, thread: str) -> Counter[str]:
    c: Counter[str] = Counter()
    for frames, count in stacks:
        if thread_of(frames) == thread:
            c[short(frames[-1])] += count
    return c


def summarize(stacks: Stacks, n: int) -> tuple[list[str], dict[str, Any]]:
    lines = [
        f"py-spy record --idle -r 400 --threads, worker.py --client ours --scenario spool --n {n}:"
        " wall-clock samples, waits included (sleeping, locks, SQLite, the network).",
        "",
    ]
    summary: dict[str, Any] = {}
    for thread in ("sender", "spooler"):
        inc, total = inclusive(stacks, thread)
        lines.append(f"{thread} thread: {total} samples; our functions, inclusive")
        lines += [f"  {100 * v / max(total, 1):5.1f}%  {k}" for k, v in inc.most_common(16)]
        lines.append(f"{thread} thread, leaf frames")
        lines += [
            f"  {100 * v / max(total, 1):5.1f}%  {k}"
            for k, v in leaves(stacks, thread).most_common(10)
        ]
        lines.append("")
        summary[thread] = [[k, round(100 * v / max(total, 1), 1)] for k, v in inc.most_common(8)]
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out-dir", default=str(DOCS))
    args = ap.parse_args()
    out: dict[str, Any] = {"n": args.n}
    work = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    raw = harness.RESULTS / "profile-spool.raw"
    sink = harness.Sink()
    try:
        extra = ("--idle", "--", "--scenario", "spool", "--spool", str(work / "spool.db"))
        p = pyspy(sink, args.n, "raw", raw, gil=False, extra=extra)
        if p.rc != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {p.out[-500:]}")
        lines, out["summary"] = summarize(parse(raw.read_text()), args.n)
        (Path(args.out_dir) / "profile-spool.txt").write_text("\n".join(lines) + "\n")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
