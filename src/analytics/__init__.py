"""analytics: server-side product analytics for Python."""

from analytics._version import __version__

__all__ = ["__version__"]
