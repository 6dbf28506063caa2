"""Showing untrusted text on a terminal: control characters become visible escapes.

Stored events, collector answers, file names and file contents are written by others. Printed
raw, an ESC sequence in a ``userId`` clears the screen or retitles the window, a CR or LF
forges extra rows, a bidi override reorders what is read. Every human-readable line the
command line prints goes through :func:`printable` (JSON output needs nothing: JSON escapes
control characters itself).
"""

from __future__ import annotations

import re

import click

__all__ = ["echo", "printable"]

# C0 controls (tab, CR and LF included), DEL, C1 controls (the 8-bit CSI U+009B among them),
# line/paragraph separators and the bidi embedding, override and isolate marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``, ``\\r``)."""
    return _UNSAFE.sub(_escape, text)


def echo(text: str, *, err: bool = False) -> None:
    """Print one line of ``text`` with its control characters escaped."""
    click.echo(printable(text), err=err)
