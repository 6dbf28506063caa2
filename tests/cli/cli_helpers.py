"""Helpers for the command-line tests: run `python -m analytics ...` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

WRITE_KEY = "test-write-key-5f1c"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: no inherited ANALYTICS_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m analytics ARGS` to completion (bounded by `timeout`)."""
    return subprocess.run(
        [sys.executable, "-m", "analytics", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else cli_env(ANALYTICS_WRITE_KEY=WRITE_KEY),
        check=False,
    )
