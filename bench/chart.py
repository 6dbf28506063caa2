# ruff: noqa: RUF002, RUF003  (× and – are the report's typography)
"""The chart: µs per track() in the caller and delivered events/s, per client (medians with
min–max bars), from the throughput runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stats import Agg, metric, select

ORDER = ["ours", "segment", "posthog", "rudder"]
NAMES = {
    "ours": "analytics\n(ours)",
    "segment": "segment\n2.4.0",
    "posthog": "posthog",
    "rudder": "rudder",
}
COLORS = {"ours": "#2a7ab9", "segment": "#9a9a9a", "posthog": "#c18a3b", "rudder": "#7d6aa8"}


def _panel(ax: Any, clients: list[str], aggs: list[Agg], title: str, fmt: str) -> None:
    x = range(len(clients))
    meds = [a.med for a in aggs]
    err = [[a.med - a.lo for a in aggs], [a.hi - a.med for a in aggs]]
    bars = ax.bar(x, meds, yerr=err, capsize=4, color=[COLORS[c] for c in clients])
    ax.set_xticks(list(x), [NAMES[c] for c in clients])
    ax.set_title(title, fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    for b, m in zip(bars, meds, strict=True):
        ax.annotate(
            fmt.format(m),
            (b.get_x() + b.get_width() / 2, m),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 3),
            textcoords="offset points",
        )


def draw(res: dict[str, Any], path: Path) -> None:
    runs = res.get("runs", [])
    clients = [c for c in ORDER if select(runs, "throughput", c)]
    cost = [metric(runs, "throughput", c, "median_us") for c in clients]
    rate = [metric(runs, "throughput", c, "delivered_per_s") for c in clients]
    ok = [c for c, a, b in zip(clients, cost, rate, strict=True) if a and b]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    if ok:
        _panel(
            ax1,
            ok,
            [a for a in cost if a],
            "µs per track() in the caller (median; lower is better)",
            "{:.1f}",
        )
        _panel(
            ax2,
            ok,
            [a for a in rate if a],
            "delivered events/s, end to end (higher is better)",
            "{:,.0f}",
        )
    n = res["config"]["n"]
    fig.suptitle(
        f"N = {n:,} track() calls, 10 properties, 500 per request — {res['date']}, "
        f"{res['machine']['cores']} cores",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
