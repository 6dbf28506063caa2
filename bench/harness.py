"""Plumbing for bench/run.py: the benchmark virtualenv, bounded subprocesses, the sink."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
VENV_PY = VENV / "bin" / "python"
RESULTS = BENCH / "results"
STAMP = VENV / ".bench-stamp"


def _stamp() -> str:
    h = hashlib.sha256()
    for f in (BENCH / "requirements.txt", ROOT / "pyproject.toml"):
        h.update(f.read_bytes())
    return h.hexdigest()


def ensure_venv(argv: list[str]) -> None:
    """Creates/updates bench/.venv (peers, tools and this project, editable) and re-executes
    the benchmark inside it. Returns only when already running inside it."""
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    fresh = STAMP.exists() and STAMP.read_text() == _stamp()
    if inside and fresh:
        return
    if not VENV_PY.exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    if not fresh:
        print("installing the peers, the tools and this project into bench/.venv ...", flush=True)
        pip = [str(VENV_PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", "bench/requirements.txt"], cwd=ROOT, check=True, timeout=900)
        subprocess.run([*pip, "-e", ".[collector,cli,postgres]"], cwd=ROOT, check=True, timeout=900)
        STAMP.write_text(_stamp())
    os.execv(str(VENV_PY), [str(VENV_PY), *argv])


@dataclass
class Proc:
    rc: int | None
    out: str
    seconds: float
    timed_out: bool


def run(cmd: list[str], timeout: float, err_path: Path | None = None, **kw: Any) -> Proc:
    """Runs cmd in its own process group; at the timeout the whole group is killed."""
    t0 = time.perf_counter()
    err = open(err_path, "wb") if err_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True, **kw)
        try:
            out, _ = p.communicate(timeout=timeout)
            return Proc(p.returncode, out.decode(), time.perf_counter() - t0, False)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate(timeout=10)
            return Proc(None, out.decode(), time.perf_counter() - t0, True)
    finally:
        if err_path:
            err.close()  # type: ignore[union-attr]


def result_line(proc: Proc) -> dict[str, Any]:
    for line in proc.out.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    why = "timed out" if proc.timed_out else f"exit code {proc.rc}, no RESULT line"
    return {"error": why}


class Sink:
    """The Node.js event-counting sink (bench/sink.js), started once per benchmark."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(BENCH / "sink.js"), "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)  # bounded start
        line = self.proc.stdout.readline().decode().split() if ready else []
        if len(line) != 2 or line[0] != "LISTENING":
            self.stop()
            raise RuntimeError("the sink did not start (is Node.js >= 18 installed?)")
        self.port = int(line[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def capacity(self, seconds: float, connections: int = 4) -> dict[str, Any]:
        """Events/s the sink counts under sink_load.js (after a short warm-up of its JIT)."""
        load = ["node", str(BENCH / "sink_load.js"), str(self.port)]
        run([*load, "500", str(connections)], timeout=30)
        p = run(
            [
                "node",
                str(BENCH / "sink_load.js"),
                str(self.port),
                str(int(seconds * 1000)),
                str(connections),
            ],
            timeout=seconds + 30,
        )
        out = json.loads(p.out.strip().splitlines()[-1]) if p.rc == 0 else {"error": p.out}
        out["connections"] = connections
        return dict(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


_BARE: set[str] = set()


def import_time_us(module: str) -> float | None:
    """Cumulative `-X importtime` of everything `import module` loads beyond a bare start."""
    if not _BARE:
        _BARE.update(name for name, _ in _importtime_lines("pass") or [])
    lines = _importtime_lines(f"import {module}")
    if lines is None:
        return None
    seen = _BARE
    return float(sum(us for name, us in lines if name not in seen))


def _importtime_lines(code: str) -> list[tuple[str, int]] | None:
    p = subprocess.run(
        [str(VENV_PY), "-X", "importtime", "-c", code],
        capture_output=True,
        timeout=60,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        return None
    out = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # top level only (nested names are indented further)
            out.append((name.strip(), int(cum)))
    return out


def cpu_times() -> list[int] | None:
    """The machine's cumulative CPU times from /proc/stat (user ... steal), or None."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_share(start: list[int] | None, end: list[int] | None) -> float | None:
    """The share of CPU time the hypervisor took from this machine between two samples."""
    if not start or not end:
        return None
    delta = [b - a for a, b in zip(start, end, strict=True)]
    return delta[7] / sum(delta) if sum(delta) else None


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    node = subprocess.run(
        ["node", "--version"], check=False, capture_output=True, text=True, timeout=30
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "node": node.stdout.strip(),
    }
