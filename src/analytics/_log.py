"""Per-client logging: a client's ``log`` and ``log_level`` apply to its own records only.

Every record goes to the application's ``analytics`` logger (and so to its handlers), but the
decision to emit it is the client's: ``log=False`` silences that client alone, and its
``log_level`` (INFO by default, the seed's) decides which of its records are made. The library
never sets the level of, or adds a handler to, a logger the application owns; a level the
application set on the ``analytics`` logger still filters (records below it are not made).
"""

from __future__ import annotations

import logging

__all__ = ["ClientLog"]

_logger = logging.getLogger("analytics")


class ClientLog:
    """The logging methods of one client, with its own switch and level."""

    __slots__ = ("enabled", "level")

    def __init__(self, enabled: bool = True, level: int = logging.INFO) -> None:
        """Emit records at ``level`` and above when ``enabled``."""
        self.enabled = enabled
        self.level = level

    def is_enabled_for(self, level: int) -> bool:
        """True when a record at ``level`` would be made."""
        own = _logger.level  # set by the application, if at all: it still filters
        return self.enabled and level >= self.level and level >= own and not _logger.disabled

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        """Make a record and hand it to the ``analytics`` logger's handlers (and its parents')."""
        if not self.is_enabled_for(level):
            return
        info = None
        if exc_info:
            import sys  # noqa: PLC0415

            info = sys.exc_info()
        record = _logger.makeRecord(_logger.name, level, __file__, 0, msg, args, info)
        _logger.handle(record)  # no level check here: the client's level decided

    def debug(self, msg: str, *args: object) -> None:
        """A DEBUG record."""
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        """An INFO record."""
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        """A WARNING record."""
        self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        """An ERROR record."""
        self.log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        """An ERROR record with the exception being handled."""
        self.log(logging.ERROR, msg, *args, exc_info=True)
