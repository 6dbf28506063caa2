"""What ``--db`` names: a SQLite file path or a ``postgresql://`` URL, and opening its store.

A URL may carry a password (``postgresql://user:secret@host/db``). It is never shown: every
place that names the database (logs, ``repr``, errors, ``/health``) uses :func:`redact`, and
error texts from the driver go through :func:`scrub`. libpq's own ``PGPASSWORD`` and
``~/.pgpass`` keep it out of the URL altogether.

The PostgreSQL store is imported only when a URL is given, so the collector needs psycopg
(the ``postgres`` extra) only then.
"""

from __future__ import annotations

from os import PathLike, fspath
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from analytics.collector._store import SQLiteStore, Store

__all__ = ["check_retention", "is_url", "open_store", "redact", "scrub"]

_SCHEMES = ("postgresql://", "postgres://")


def is_url(db: str | PathLike[str]) -> bool:
    """True when ``db`` is a PostgreSQL URL rather than a file path."""
    return isinstance(db, str) and db.lower().startswith(_SCHEMES)


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    secret = parts.password
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "password":
            secret = value
    return secret or None


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")
        if netloc[1]:
            user = netloc[0].partition(":")[0]
            host = f"{user}@{netloc[2]}" if user else netloc[2]
        else:
            host = parts.netloc
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        kept = urlencode([(k, v) for k, v in query if k != "password"])
        return urlunsplit((parts.scheme, host, parts.path, kept, ""))
    except ValueError:
        return "postgresql://(unparsable URL)"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with the URL's password and the URL itself replaced."""
    secret = _password(url)
    text = text.replace(url, redact(url))
    if secret:
        text = text.replace(secret, "***")
    return text


def check_retention(db: str | PathLike[str], retention_days: int | None) -> None:
    """Raise ``ValueError`` unless ``retention_days`` fits ``db`` (PostgreSQL only, >= 1)."""
    if retention_days is None:
        return
    if not is_url(db):
        raise ValueError("--retention-days needs a PostgreSQL database (--db postgresql://...)")
    if retention_days < 1:
        raise ValueError("--retention-days must be at least 1")


def open_store(db: str | PathLike[str], *, readonly: bool = False, **options: Any) -> Store:
    """The store ``db`` names: :class:`PostgresStore` for a URL, else :class:`SQLiteStore`.

    ``options`` go to the store (``retention_days`` is PostgreSQL's only).

    Raises:
        FileNotFoundError: ``readonly`` and no SQLite file at ``db``.
        StoreError: the PostgreSQL server cannot be reached or its schema is not usable.
    """
    if is_url(db):
        # Only here: psycopg (the postgres extra) is needed only for a URL.
        from analytics.collector._pg import PostgresStore  # noqa: PLC0415

        return PostgresStore(fspath(db), readonly=readonly, **options)
    check_retention(db, options.pop("retention_days", None))
    return SQLiteStore(Path(db), readonly=readonly, **options)
