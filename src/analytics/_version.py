"""The package version, kept in one place (read without importlib.metadata to keep import fast).

``pyproject.toml`` reads ``__version__`` from here when the package is built. ``DISTRIBUTION``
is the name to ``pip install``: the import name is ``analytics``, but that name on the package
index belongs to an unrelated project.
"""

__all__ = ["DISTRIBUTION", "__version__"]

__version__ = "0.1.0"
DISTRIBUTION = "analytics-kit"
