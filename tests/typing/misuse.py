"""Misuse that mypy --strict must flag (checked by scripts/check, with warn_unused_ignores).

Each line below is an error, silenced by a `type: ignore[code]`. If the typing of the public
API ever loosens (a `*args, **kwargs` facade, a module `__getattr__` visible to type checkers,
`Any` where a type is known), mypy stops flagging the line, and `warn_unused_ignores` turns the
now-unused ignore into an error: this file then fails the check.
"""

from __future__ import annotations

import analytics


def misuse() -> None:
    analytics.trakc(user_id="u", event="e")  # type: ignore[attr-defined]
    analytics.track(user_id="u", evnt="e")  # type: ignore[call-arg]
    analytics.init("K", flush_att=50)  # type: ignore[call-arg]
    analytics.init("K", flush_at="50")  # type: ignore[arg-type]
    analytics.track(user_id="u", event="e", timestamp=1.5)  # type: ignore[arg-type]
    analytics.identify(user_id=["u"])  # type: ignore[arg-type]
    analytics.flush(asynch=False)  # type: ignore[call-arg]
    analytics.Client("K", send="no")  # type: ignore[arg-type]
    analytics.Client("K", proxies=123)  # type: ignore[arg-type]
    client = analytics.Client("K")
    client.track("u", "e", properties=["not", "a", "mapping"])  # type: ignore[arg-type]
    client.page("u", name=3)  # type: ignore[arg-type]
    ok: str = client.flush()  # type: ignore[assignment]
    print(ok)
