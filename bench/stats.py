# ruff: noqa: RUF001, RUF002, RUF003  (× and – are the report's typography)
"""Aggregation of the per-run results: medians with min–max, per-run ratios against Segment,
and the targets of the client, collector, spool and CLI issues."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

Runs = list[dict[str, Any]]


@dataclass
class Agg:
    med: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 1, thousands: bool = False) -> str:
        f = (lambda v: f"{v:,.0f}") if thousands else (lambda v: f"{v:,.{digits}f}")
        if self.n == 1 or self.lo == self.hi:
            return f(self.med)
        return f"{f(self.med)} ({f(self.lo)}–{f(self.hi)})"


def agg(values: list[float]) -> Agg | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return Agg(statistics.median(vals), min(vals), max(vals), len(vals))


def select(runs: Runs, scenario: str, client: str) -> Runs:
    return [r for r in runs if r["scenario"] == scenario and r["client"] == client]


def metric(runs: Runs, scenario: str, client: str, key: str) -> Agg | None:
    return agg([r.get(key) for r in select(runs, scenario, client) if "error" not in r])


def ratios(
    runs: Runs,
    scenario: str,
    key: str,
    client: str = "ours",
    base: str = "segment",
    base_scenario: str | None = None,
) -> Agg | None:
    """client / base for each round in which both ran (the per-run ratio)."""
    a = {r["round"]: r.get(key) for r in select(runs, scenario, client) if "error" not in r}
    b = {
        r["round"]: r.get(key)
        for r in select(runs, base_scenario or scenario, base)
        if "error" not in r
    }
    vals = [a[k] / b[k] for k in a if k in b and a[k] is not None and b[k]]
    return agg(vals)


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    ok: bool | None  # None: could not be measured in this run
    margin: str = ""  # how far from the goal, when it is missed


def _margin(value: float, op: str, limit: float) -> str:
    if op in ("<=", "<"):
        return f"{100 * (value / limit - 1):.0f}% over"
    if op == ">" and value == limit:
        return "equal"
    return f"{100 * (1 - value / limit):.0f}% short ({value / limit:.2f} of the goal)"


def _cmp(
    name: str,
    goal: str,
    value: Agg | None,
    test: tuple[str, float],
    unit: str = "",
    digits: int = 3,
) -> Target:
    if value is None:
        return Target(name, goal, "not measured", None)
    op, limit = test
    ok = {
        "<=": value.med <= limit,
        "<": value.med < limit,
        ">=": value.med >= limit,
        ">": value.med > limit,
    }[op]
    return Target(
        name, goal, f"{value.fmt(digits)}{unit}", ok, "" if ok else _margin(value.med, op, limit)
    )


def client_targets(res: dict[str, Any]) -> list[Target]:
    runs = res.get("runs", [])
    if not select(runs, "throughput", "ours"):
        return [Target("our client", "all client targets", "not available yet", None)]
    t = [
        _cmp(
            "caller cost (median µs per track) vs Segment",
            "≤ 0.10×",
            ratios(runs, "throughput", "median_us"),
            ("<=", 0.10),
            "×",
        ),
        _cmp(
            "delivered events/s vs Segment",
            "≥ 10×",
            ratios(runs, "throughput", "delivered_per_s"),
            (">=", 10),
            "×",
            1,
        ),
        _cmp(
            "CPU µs per event vs Segment",
            "≤ 0.10×",
            ratios(runs, "throughput", "cpu_us_per_event"),
            ("<=", 0.10),
            "×",
        ),
        _cmp(
            "peak RSS with N queued vs Segment",
            "≤ 0.33×",
            ratios(runs, "rss", "hwm_after_calls_mb"),
            ("<=", 1 / 3),
            "×",
        ),
    ]
    burst = [r.get("lost") for r in select(runs, "burst", "ours") if "error" not in r]
    t.append(
        Target(
            "events dropped in the default-settings burst",
            "0 in every run",
            ", ".join(map(str, burst)) or "not measured",
            bool(burst) and all(v == 0 for v in burst),
        )
    )
    f503 = [
        (r.get("lost"), r.get("duplicates"))
        for r in select(runs, "fail503", "ours")
        if "error" not in r
    ]
    t.append(
        Target(
            "lost / duplicated with 20% of requests answered 503",
            "0 / 0 in every run",
            ", ".join(f"{a} / {b}" for a, b in f503) or "not measured",
            bool(f503) and all(a == 0 and b == 0 for a, b in f503),
        )
    )
    t.append(
        _cmp(
            "`import analytics`",
            "< 30 ms",
            agg(res.get("import_ms", {}).get("ours", [])),
            ("<", 30),
            " ms",
            1,
        )
    )
    spool = ratios(runs, "spool", "delivered_per_s", base="ours", base_scenario="throughput")
    if select(runs, "spool", "ours"):
        cost = ratios(runs, "spool", "median_us", base="ours", base_scenario="throughput")
        t.append(
            _cmp(
                "spool on: median µs per track vs spool off",
                "≤ 1.2× (unchanged within noise)",
                cost,
                ("<=", 1.2),
                "×",
                2,
            )
        )
        t.append(
            _cmp(
                "spool on: delivered events/s vs spool off",
                "≥ 0.50×",
                spool,
                (">=", 0.5),
                "×",
                2,
            )
        )
    return t


def extra_targets(res: dict[str, Any]) -> list[Target]:
    out = []
    col = res.get("collector")
    if col and col.get("rounds"):
        ev = agg([r["events_per_s"] for r in col["rounds"]])
        fl = agg([r["vs_floor"] for r in col["rounds"]])
        out.append(
            _cmp(
                "collector events/s stored and committed",
                "≥ 100,000",
                ev,
                (">=", 100_000),
                " events/s",
                0,
            )
        )
        out.append(_cmp("collector vs its floor (same run)", "≥ 0.50×", fl, (">=", 0.5), "×", 2))
    else:
        out.append(
            Target(
                "collector",
                "≥ 100,000 events/s, ≥ 0.50× floor",
                (col or {}).get("error", "not available yet"),
                None,
            )
        )
    out += postgres_targets(col or {})
    imp = res.get("cli_import")
    if imp and "events_per_s" in imp:
        out.append(
            _cmp(
                f"`analytics import` of {imp['lines']:,} JSON lines",
                "≥ 50,000 events/s",
                agg([imp["events_per_s"]]),
                (">=", 50_000),
                " events/s",
                0,
            )
        )
    else:
        out.append(
            Target(
                "`analytics import`",
                "≥ 50,000 events/s",
                (imp or {}).get("error", "not available yet"),
                None,
            )
        )
    return out


def postgres_targets(col: dict[str, Any]) -> list[Target]:
    """Issue 12's: one collector on PostgreSQL >= 0.5x its COPY floor; two store more than one
    (each pair of rounds compared within the round)."""
    pg = col.get("postgres") or {}
    rounds = pg.get("rounds") or {}
    one, two = rounds.get("1") or [], rounds.get("2") or []
    if not one:
        return [
            Target("collector on PostgreSQL", "≥ 0.50× floor", pg.get("error", "not run"), None)
        ]
    vs = agg([r["vs_floor"] for r in one])
    out = [_cmp("1 collector on PostgreSQL vs its COPY floor", "≥ 0.50×", vs, (">=", 0.5), "×", 2)]
    scale = agg([b["events_per_s"] / a["events_per_s"] for a, b in zip(one, two, strict=False)])
    out.append(
        _cmp("2 collector processes on PostgreSQL / 1", "> 1.00×", scale, (">", 1.0), "×", 2)
    )
    return out
