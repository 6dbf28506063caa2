"""Who may open the admin pages (debugger, metrics): the rule as a pure function, then over
real HTTP on 127.0.0.1 through ``AdminAccess.require`` and ``AdminAccess.login``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from analytics.collector._admin import COOKIE, AdminAccess, Denied
from analytics.collector._cli import serve_command

TOKEN = "t0ken-for-the-admin-pages"


@pytest.mark.parametrize(
    ("host", "token", "mode"),
    [
        ("127.0.0.1", None, "open"),
        ("::1", None, "open"),
        ("localhost", None, "open"),
        ("0.0.0.0", None, "off"),
        ("192.0.2.10", None, "off"),
        ("127.0.0.1", TOKEN, "token"),
        ("0.0.0.0", TOKEN, "token"),
    ],
)
def test_mode_follows_the_bind_address_and_the_token(
    host: str, token: str | None, mode: str
) -> None:
    assert AdminAccess(host, token).mode == mode


@pytest.mark.parametrize(
    "host_header", ["127.0.0.1:8088", "localhost:8088", "[::1]:8088", "127.0.0.2"]
)
def test_open_mode_needs_no_credential_from_a_loopback_host(host_header: str) -> None:
    assert AdminAccess("127.0.0.1").decide(host_header=host_header) is None


@pytest.mark.parametrize(
    "host_header", [None, "evil.example:8088", "192.168.1.2:8088", "[2001:db8::1]"]
)
def test_open_mode_refuses_a_foreign_host_header(host_header: str | None) -> None:
    # A page on evil.example whose name was rebound to 127.0.0.1 sends Host: evil.example.
    assert AdminAccess("127.0.0.1").decide(host_header=host_header) == Denied(
        403, "Loopback host required"
    )


def test_off_when_a_public_bind_has_no_token_whatever_is_sent() -> None:
    access = AdminAccess("0.0.0.0")
    denied = access.decide(host_header="127.0.0.1", authorization=f"Bearer {TOKEN}")
    assert denied is not None
    assert denied.status == 404


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_token_mode_accepts_the_bearer_token_only(bind: str) -> None:
    access = AdminAccess(bind, TOKEN)
    assert access.decide(host_header="x", authorization=f"Bearer {TOKEN}") is None
    assert access.decide(host_header="x", authorization=f"bearer  {TOKEN} ") is None
    for authorization in (None, "Bearer", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        denied = access.decide(host_header="127.0.0.1", authorization=authorization)
        assert denied == Denied(401, "Admin token required"), authorization


def test_the_session_cookie_is_not_the_token_itself() -> None:
    access = AdminAccess("0.0.0.0", TOKEN)
    assert access.decide(host_header="x", cookie=f"{COOKIE}={TOKEN}") is not None
    assert access.decide(host_header="x", cookie="garbage;;=") is not None
    other = AdminAccess("0.0.0.0", TOKEN + "-other")
    assert not other.token_matches(TOKEN)


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        AdminAccess("127.0.0.1", "short")


def test_serve_refuses_a_short_admin_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        serve_command, ["--db", str(tmp_path / "x.db"), "--admin-token", "short"]
    )
    assert result.exit_code == 2
    assert "at least 16" in result.output
    assert not (tmp_path / "x.db").exists()


# -- over HTTP ---------------------------------------------------------------------------------


async def _page(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS]
    login = access.login(request)
    if login is not None:
        return login
    access.require(request)
    return web.Response(text="admin page")


ACCESS = web.AppKey("access", AdminAccess)


async def _exchange(
    access: AdminAccess, requests: list[tuple[str, dict[str, str]]]
) -> list[tuple[int, dict[str, str], str]]:
    """Serve ``/`` guarded by ``access`` on 127.0.0.1; send each (path, headers) request."""
    app = web.Application()
    app[ACCESS] = access
    app.router.add_get("/", _page)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    replies = []
    try:
        async with aiohttp.ClientSession() as session:
            for path, headers in requests:
                async with session.get(
                    f"http://127.0.0.1:{port}{path}", headers=headers, allow_redirects=False
                ) as resp:
                    replies.append((resp.status, dict(resp.headers), await resp.text()))
    finally:
        await runner.cleanup()
    return replies


def test_http_loopback_is_open_but_checks_the_host_header() -> None:
    replies = asyncio.run(
        _exchange(AdminAccess("127.0.0.1"), [("/", {}), ("/", {"Host": "evil.example"})])
    )
    assert [status for status, _, _ in replies] == [200, 403]
    assert replies[0][2] == "admin page"


def test_http_off_without_a_token_on_a_public_bind() -> None:
    # The rule is built for a public bind; the test server itself listens on 127.0.0.1.
    replies = asyncio.run(_exchange(AdminAccess("0.0.0.0"), [("/", {}), (f"/?token={TOKEN}", {})]))
    assert [status for status, _, _ in replies] == [404, 401]


def test_http_token_by_bearer_or_by_the_cookie_the_login_redirect_sets() -> None:
    access = AdminAccess("0.0.0.0", TOKEN)
    first = asyncio.run(
        _exchange(
            access,
            [
                ("/", {}),
                ("/", {"Authorization": f"Bearer {TOKEN}"}),
                ("/?token=wrong-token-wrong-token", {}),
                (f"/?token={TOKEN}", {}),
            ],
        )
    )
    assert [status for status, _, _ in first] == [401, 200, 401, 303]
    assert first[0][1]["WWW-Authenticate"] == "Bearer"
    redirect = first[3][1]
    assert redirect["Location"] == "/"
    cookie = redirect["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    (again,) = asyncio.run(_exchange(access, [("/", {"Cookie": session})]))
    assert again[0] == 200
    assert again[2] == "admin page"
