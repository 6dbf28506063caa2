# ruff: noqa: RUF001, RUF003  (× and – are the report's typography)
"""The asyncio section of docs/benchmarks.md (results of bench/async_bench.py)."""

from __future__ import annotations

from typing import Any

NAMES = {
    "ours-thread": "analytics `Client` (thread)",
    "ours-async": "**analytics `AsyncClient`**",
    "posthog-async": "posthog `AsyncClient`",
}


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def asyncio_section(res: dict[str, Any]) -> list[str]:
    """The table, the two targets of issue 16, and how it was measured."""
    data = res.get("async")
    if not data or "summary" not in data:
        return []
    summary = data["summary"]
    out = [
        f"## asyncio: {data['n']:,} calls from a coroutine, {data['rounds']} round(s)",
        "",
        "The caller is a coroutine that yields to the loop every 100 calls; each run is a fresh "
        "process; medians over the rounds, ratios to our threaded `Client` per round "
        "(bench/async_bench.py).",
        "",
        "| client | µs per call (median) | delivered events/s | lost | call vs Client | delivered vs Client |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in NAMES.items():
        row = summary.get(key)
        if row:
            out.append(
                f"| {name} | {row['median_us']:.2f} | {row['delivered_per_s']:,.0f} | {row['lost']} "
                f"| {_x(row['call_vs_client'])} | {_x(row['delivered_vs_client'])} |"
            )
    ours = summary.get("ours-async")
    if ours and ours["call_vs_client"] is not None:
        call_ok = ours["call_vs_client"] <= 1.2
        deliver_ok = ours["delivered_vs_client"] >= 1.0
        out += [
            "",
            "| target | goal | measured | result |",
            "|---|---|---|---|",
            f"| AsyncClient caller cost vs Client | ≤ 1.2× | {_x(ours['call_vs_client'])} | "
            f"**{'PASS' if call_ok else 'FAIL'}** |",
            f"| AsyncClient delivered events/s vs Client | ≥ 1.0× | {_x(ours['delivered_vs_client'])} | "
            f"**{'PASS' if deliver_ok else 'FAIL'}** |",
        ]
    return [*out, ""]
