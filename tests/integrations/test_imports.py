"""The integrations cost nothing until used: ``import analytics`` loads none of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("django", "flask", "werkzeug", "celery", "kombu", "starlette", "fastapi", "uvicorn")


def loaded_after(statement: str) -> set[str]:
    """The frameworks (and our integrations package) in sys.modules after ``statement``."""
    names = (*FRAMEWORKS, "analytics.integrations")
    code = f"import sys; {statement}; print(','.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(filter(None, out.stdout.strip().split(",")))


def test_import_analytics_loads_no_framework() -> None:
    assert loaded_after("import analytics; analytics.context") == set()


@pytest.mark.parametrize(
    ("module", "needed", "tolerated"),
    [
        ("asgi", set(), set()),  # pure ASGI: not even Starlette
        ("flask", {"flask", "werkzeug"}, set()),
        ("django", {"django"}, set()),
        # kombu.utils.json imports django.utils.functional when Django is installed (not ours)
        ("celery", {"celery", "kombu"}, {"django"}),
    ],
)
def test_each_integration_loads_only_its_framework(
    module: str, needed: set[str], tolerated: set[str]
) -> None:
    loaded = loaded_after(f"import analytics.integrations.{module}") - {"analytics.integrations"}
    assert needed <= loaded <= needed | tolerated
