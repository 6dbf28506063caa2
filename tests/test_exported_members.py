"""The public surface: __all__ lists exactly the public names, sorted, and they resolve."""

from __future__ import annotations

import subprocess
import sys

import analytics


def test_all_is_sorted_and_complete() -> None:
    """Every name in __all__ exists, and every public module-level function or class is listed."""
    assert analytics.__all__ == sorted(analytics.__all__)
    for name in analytics.__all__:
        assert getattr(analytics, name) is not None
    public = {
        name
        for name, value in vars(analytics).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, type))
    }
    assert public - {"default_client", "on_error", "TYPE_CHECKING"} <= set(analytics.__all__)


def test_public_classes_show_as_analytics() -> None:
    """Classes report module 'analytics', not the private module they live in."""
    for name in (
        "Client",
        "AsyncClient",
        "Stats",
        "context",
        "ConfigError",
        "InvalidEventError",
        "DeliveryError",
    ):
        assert getattr(analytics, name).__module__ == "analytics"


def test_import_loads_no_heavy_modules() -> None:
    """`import analytics` loads neither orjson, urllib3, threading internals nor typing."""
    code = (
        "import sys, analytics; "
        "print(','.join(m for m in ('orjson', 'urllib3', 'typing', 'logging', 'sqlite3') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
