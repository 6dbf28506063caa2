"""The package version, kept in one place (read without importlib.metadata to keep import fast)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
