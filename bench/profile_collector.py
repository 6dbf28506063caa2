"""Where the collector's time goes under the ingest benchmark's load: py-spy attached to
`analytics serve` while the sender processes of collector_bench.py post their batches; GIL-only
samples (the collector's Python CPU), summarized per thread (event loop, writer) by our
functions, inclusive, and by leaf frame. Writes docs/profile-collector.txt.

    python profile_collector.py --senders 4 --batches 50

Prints one line `RESULT {json}`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from collector_bench import ingest, make_bodies, start_server, stop_server
from profile_client import DOCS, parse, short

Stacks = list[tuple[list[str], int]]


def thread_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "Writer._run (" in joined or "_writer.py" in joined:
        return "writer"
    return "event loop" if "run_forever" in joined or "_run_once" in joined else "other"


def per_thread(stacks: Stacks, thread: str) -> tuple[Counter[str], Counter[str], int]:
    inc: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        if thread_of(frames) != thread:
            continue
        total += count
        leaf[short(frames[-1])] += count
        seen = set()
        for f in frames:
            if "analytics/" in f or "aiohttp/" in f or "sqlite3" in f:
                name = f.split(" (")[0]
                if name not in seen:
                    seen.add(name)
                    inc[name] += count
    return inc, leaf, total


def summarize(stacks: Stacks, res: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    lines = [
        "py-spy record --gil -r 400 --threads --pid <analytics serve>, during collector_bench.py's "
        f"ingest ({res['acked_events']:,} events at {res['events_per_s']:,.0f} events/s, "
        "under the profiler): only the thread holding the GIL is sampled.",
        "",
    ]
    grand = sum(c for _, c in stacks)
    summary: dict[str, Any] = {}
    for thread in ("event loop", "writer", "other"):
        inc, leaf, total = per_thread(stacks, thread)
        if not total:
            continue
        lines.append(
            f"{thread} thread: {total} samples ({100 * total / max(grand, 1):.0f}% of "
            "the GIL-holding samples); functions, inclusive"
        )
        lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in inc.most_common(18)]
        lines.append(f"{thread} thread, leaf frames")
        lines += [f"  {100 * v / total:5.1f}%  {k}" for k, v in leaf.most_common(12)]
        lines.append("")
        summary[thread] = {
            "share": round(100 * total / max(grand, 1), 1),
            "leaf": [[k, round(100 * v / total, 1)] for k, v in leaf.most_common(6)],
        }
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--out-dir", default=str(DOCS))
    args = ap.parse_args()
    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-profile-collector-"))
    raw = harness.RESULTS / "profile-collector.raw"
    raw.unlink(missing_ok=True)
    try:
        bodies = [make_bodies(s, args.batches) for s in range(args.senders)]
        # One process: py-spy follows the process it is attached to.
        server, port = start_server(work / "collector.db", workers=1)
        exe = Path(sys.executable).with_name("py-spy")
        spy = subprocess.Popen(
            [
                str(exe),
                "record",
                "--gil",
                "-r",
                "400",
                "--threads",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--pid",
                str(server.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            res = ingest(port, bodies)
        finally:
            stop_server(server)  # py-spy stops and writes its output when the process exits
            spy.wait(timeout=60)
        if not raw.exists():
            raise RuntimeError("py-spy wrote no profile (is ptrace allowed?)")
        lines, out["summary"] = summarize(parse(raw.read_text()), res)
        out["events_per_s"] = res["events_per_s"]
        (Path(args.out_dir) / "profile-collector.txt").write_text("\n".join(lines) + "\n")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
