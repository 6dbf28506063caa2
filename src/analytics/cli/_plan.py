"""Checks made before an import sends anything: each source's format, CSV headers against
--map, the log mapping and the defaults; and the settings the run uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from analytics.cli._mapping import ColumnMap, Defaults, LogMap, parse_csv_map, parse_log_map
from analytics.cli._readers import CsvReader, display_name, guess_format, open_input

__all__ = [
    "DEFAULT_LOG_MAP",
    "Plan",
    "Settings",
    "column_map_of",
    "make_defaults",
    "make_log_map",
    "make_plans",
]

DEFAULT_LOG_MAP = "timestamp,userId,event"


@dataclass(frozen=True, slots=True)
class Plan:
    """How to read one source, decided before anything is sent."""

    path: str
    fmt: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the import run needs, checked."""

    plans: Sequence[Plan]
    maps: Sequence[str]
    log_map: LogMap
    defaults: Defaults | None
    write_key: str
    host: str
    timeout: float
    retries: int
    batch_size: int
    connections: int
    dry_run: bool
    progress: bool
    progress_interval: float


def make_defaults(default_type: str | None, event: str | None, **dicts: Any) -> Defaults | None:
    """The values --type, --event, --properties ... add to every line (None: nothing)."""
    fields = {k: v for k, v in (("type", default_type), ("event", event)) if v is not None}
    return Defaults(
        fields=fields, dicts={k: v for k, v in dicts.items() if v is not None}
    ).or_none()


def make_plans(paths: Sequence[str], fmt: str | None, maps: Sequence[str]) -> list[Plan]:
    """Decide each source's format and check CSV headers against --map, before sending."""
    if list(paths).count("-") > 1:
        raise click.UsageError("`-` (standard input) can be given once")
    plans = []
    for path in paths:
        kind = fmt or ("jsonl" if path == "-" else guess_format(path))
        if kind == "csv" and path != "-":
            _read_column_map(path, maps)  # the header is checked again when it is read
        plans.append(Plan(path, kind))
    formats = {p.fmt for p in plans}
    if maps and formats == {"jsonl"}:
        raise click.UsageError("--map applies to csv and log input (see --format)")
    if maps and {"csv", "log"} <= formats:
        raise click.UsageError("--map cannot describe csv and log files at once: import them apart")
    return plans


def make_log_map(plans: Sequence[Plan], maps: Sequence[str]) -> LogMap:
    """The log-line mapping: --map when log files are imported, else the default."""
    if not maps or not any(p.fmt == "log" for p in plans):
        return parse_log_map(DEFAULT_LOG_MAP)
    try:
        return parse_log_map(",".join(maps))
    except ValueError as exc:
        raise click.UsageError(f"--map (log): {exc}") from None


def _read_column_map(path: str, maps: Sequence[str]) -> ColumnMap:
    with open_input(path) as stream:
        reader = CsvReader(stream)
        return column_map_of(reader, path, maps)


def column_map_of(reader: CsvReader, path: str, maps: Sequence[str]) -> ColumnMap:
    """Read the CSV header and map its columns; a usage error names what is wrong."""
    header = reader.header()
    if header is None:
        raise click.UsageError(f"{display_name(path)}: empty CSV file (no header row)")
    try:
        return parse_csv_map(header, maps)
    except ValueError as exc:
        raise click.UsageError(f"{display_name(path)}:1: {exc}") from None
