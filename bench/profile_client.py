"""Profiles our client's hot path with py-spy: the throughput workload (worker.py, client
"ours") against the benchmark sink, sampled with one py-spy run for the flame graph
(docs/profile-client.svg) and one for a text summary of where the time goes, per thread
(docs/profile-client.txt).

    python profile_client.py --n 300000

Prints one line `RESULT {json}` with the summary's top entries."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

DOCS = harness.ROOT / "docs"
RATE = 400  # samples per second
FRAME = re.compile(r"^(?P<fn>.+?) \((?P<file>[^:]+):(?P<line>\d+)\)$")


def pyspy(
    sink: harness.Sink, n: int, fmt: str, out: Path, gil: bool, extra: tuple[str, ...] = ()
) -> harness.Proc:
    """gil=True samples only the thread holding the GIL (Python CPU work, no waiting);
    `extra` goes to py-spy (e.g. --idle) or, after "--", to worker.py."""
    exe = Path(sys.executable).with_name("py-spy")
    spy, worker = (
        (extra[: extra.index("--")], extra[extra.index("--") + 1 :]) if extra else ((), ())
    )
    cmd = [
        str(exe),
        "record",
        *(["--gil"] if gil else []),
        *spy,
        "-r",
        str(RATE),
        "--threads",
        "-f",
        fmt,
        "-o",
        str(out),
        "--",
        sys.executable,
        str(harness.BENCH / "worker.py"),
        "--client",
        "ours",
        "--scenario",
        "throughput",
        "--n",
        str(n),
        "--sink",
        sink.url,
        "--budget",
        "40",
        *worker,
    ]
    return harness.run(cmd, timeout=90)


def short(frame: str) -> str:
    """`Client.track (analytics/_client.py:191)` -> `Client.track (_client.py:191)`, followed
    by that source line when it is one of ours."""
    m = FRAME.match(frame)
    if not m:
        return frame
    text = ""
    if m["file"].startswith("analytics/"):
        try:
            src = (harness.ROOT / "src" / m["file"]).read_text().splitlines()
            text = "  `" + src[int(m["line"]) - 1].strip()[:70] + "`"
        except (OSError, IndexError):
            pass
    return f"{m['fn']} ({Path(m['file']).name}:{m['line']}){text}"


def parse(raw: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def below(stacks: list[tuple[list[str], int]], marker: str) -> tuple[Counter[str], int]:
    """Samples under the first frame whose name starts with `marker`, keyed by the next frame
    down (the frame's own line when the sample stops there)."""
    c: Counter[str] = Counter()
    for frames, count in stacks:
        for i, f in enumerate(frames):
            if f.startswith(marker):
                key = short(frames[i + 1]) if i + 1 < len(frames) else short(f) + " [self]"
                c[key] += count
                break
    return c, sum(c.values())


def is_main(frames: list[str]) -> bool:
    """The benchmark's main thread (py-spy does not always resolve thread names)."""
    return any(f.startswith("<module> (") for f in frames[:3])


def in_loop(frames: list[str]) -> bool:
    """The main thread inside the timed loop of track() calls."""
    return any(f.startswith(("_loop_tuple (", "_loop_posthog (")) for f in frames)


def leaves(stacks: list[tuple[list[str], int]], caller: bool) -> Counter[str]:
    """Leaf frames of the timed loop (caller=True) or of the other threads (caller=False)."""
    c: Counter[str] = Counter()
    for frames, count in stacks:
        if in_loop(frames) if caller else not is_main(frames):
            c[short(frames[-1])] += count
    return c


def table(title: str, c: Counter[str], total: int, top: int = 12) -> list[str]:
    out = [f"{title} ({total} samples)"]
    for k, v in c.most_common(top):
        out.append(f"  {100 * v / max(total, 1):5.1f}%  {k}")
    return [*out, ""]


def summarize(stacks: list[tuple[list[str], int]], n: int) -> tuple[list[str], dict[str, Any]]:
    main_total = sum(c for f, c in stacks if in_loop(f))
    sender_total = sum(c for f, c in stacks if not is_main(f))
    outside = sum(c for f, c in stacks if is_main(f) and not in_loop(f))
    track, track_total = below(stacks, "Client.track ")
    put, put_total = below(stacks, "Client._put ")
    build, build_total = below(stacks, "build ")
    lines = [
        f"py-spy record --gil -r {RATE} --threads, worker.py --client ours --scenario "
        f"throughput --n {n}: only the thread holding the GIL is sampled, so this is where "
        "the Python CPU time goes (waits for the GIL, the network and the sink are not in it; "
        "the flame graph profile-client.svg is sampled without --gil and shows them).",
        f"caller thread, in the timed loop: {main_total} samples, of which {track_total} inside "
        f"Client.track ({100 * track_total / max(main_total, 1):.0f}%; the rest is the "
        "benchmark loop building the properties dict and timing the call); "
        f"{outside} more samples of the main thread outside the loop (imports, waiting for "
        "delivery) are left out",
        f"other threads (sender): {sender_total} samples",
        "",
        *table("Client.track, by the frame it calls", track, track_total),
        *table("Client._put, by the frame it calls (encode = orjson + size check)", put, put_total),
        *table("build (the message dict), by line", build, build_total),
        *table("caller thread, leaf frames", leaves(stacks, caller=True), main_total),
        *table("sender thread, leaf frames", leaves(stacks, caller=False), sender_total, 15),
    ]
    summary = {
        "main_samples": main_total,
        "track_samples": track_total,
        "sender_samples": sender_total,
        "track_top": [
            [k, round(100 * v / max(track_total, 1), 1)] for k, v in track.most_common(6)
        ],
        "put_top": [[k, round(100 * v / max(put_total, 1), 1)] for k, v in put.most_common(4)],
        "sender_leaf_top": [
            [k, round(100 * v / max(sender_total, 1), 1)]
            for k, v in leaves(stacks, caller=False).most_common(6)
        ],
    }
    return lines, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--out-dir", default=str(DOCS), help="where profile-client.{txt,svg} go")
    ap.add_argument("--no-svg", action="store_true", help="skip the flame graph run")
    args = ap.parse_args()
    out_dir = Path(args.out_dir)
    out: dict[str, Any] = {"n": args.n}
    raw = harness.RESULTS / "profile-client.raw"
    sink = harness.Sink()
    try:
        p = pyspy(sink, args.n, "raw", raw, gil=True)
        if p.rc != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {p.out[-500:]}")
        lines, summary = summarize(parse(raw.read_text()), args.n)
        (out_dir / "profile-client.txt").write_text("\n".join(lines) + "\n")
        out["summary"] = summary
        if not args.no_svg:
            svg = out_dir / "profile-client.svg"
            p = pyspy(sink, args.n, "flamegraph", svg, gil=False)
            out["svg"] = str(svg) if p.rc == 0 else None
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sink.stop()
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
