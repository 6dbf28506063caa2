"""Real clients, as the registries provide them, send one scenario to a real ``analytics serve``.

Each client (pinned in tests/peer_env.py) runs with its defaults in its own process, sends the 30
messages of client_scenario.py to ``analytics serve`` on 127.0.0.1 and exits after its own
flush; then every message is looked up in the store by ``messageId`` and compared field by
field. Raw HTTP follows Segment's HTTP API docs: a ``/v1/batch`` body with a batch-level
``context``, Basic auth with the write key as user name.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from client_scenario import COUNT, differences, scenario
from collector_http import request
from test_collector_cli import start_serve

from analytics.collector import SQLiteStore

PEERS = Path(__file__).parent / "peers"
WRITE_KEY = "compat-write-key"
pytestmark = pytest.mark.timeout(900)  # the first test installs the clients


def served(tmp_path: Path) -> tuple[subprocess.Popen[str], str, Path]:
    db = tmp_path / "clients.db"
    proc, url = start_serve(db, "--write-key", WRITE_KEY)
    return proc, url, db


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return stderr


def run_client(args: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, f"the client failed:\n{done.stdout}\n{done.stderr}"


def check_store(db: Path, sent: list[dict[str, Any]], *, device_time: bool = False) -> None:
    stored = SQLiteStore(db, readonly=True).events()
    assert len(stored) == COUNT, [m["messageId"] for m in stored]
    by_id = {m["messageId"]: m for m in stored}
    problems = {
        message["messageId"]: differences(
            message, by_id[message["messageId"]], device_time=device_time
        )
        for message in sent
        if message["messageId"] in by_id
    }
    assert set(by_id) == {m["messageId"] for m in sent}
    assert {k: v for k, v in problems.items() if v} == {}


def identify_traits_in_context(message: dict[str, Any]) -> dict[str, Any]:
    """rudder-sdk-python sends identify traits as ``context.traits`` (RudderStack's form)."""
    if message["type"] != "identify":
        return message
    traits = message.pop("traits")
    return {**message, "context": {**message["context"], "traits": traits}}


def send_and_check(
    tmp_path: Path,
    client: str,
    command: list[str],
    env: dict[str, str] | None = None,
    *,
    device_time: bool = False,
    form: Callable[[dict[str, Any]], dict[str, Any]] = lambda message: message,
) -> None:
    sent = scenario(client)
    path = tmp_path / "scenario.json"
    path.write_bytes(orjson.dumps(sent))
    proc, url, db = served(tmp_path)
    try:
        run_client([*command, url, WRITE_KEY, str(path)], env)
    finally:
        stderr = stop(proc)
    assert proc.returncode == 0, stderr
    assert "refused a message" not in stderr
    check_store(db, [form(m) for m in sent], device_time=device_time)


@pytest.mark.parametrize(
    ("client", "module"),
    [
        ("segment-analytics-python", "segment.analytics"),
        ("rudder-sdk-python", "rudderstack.analytics"),
    ],
)
def test_python_clients_store_every_field(
    tmp_path: Path, peer_python: Path, client: str, module: str
) -> None:
    command = [str(peer_python), str(PEERS / "send_python.py"), module]
    rudder = client.startswith("rudder")
    form = identify_traits_in_context if rudder else lambda message: message
    send_and_check(tmp_path, client, command, form=form)


@pytest.mark.parametrize(
    ("package", "device_time"),
    [("@segment/analytics-node", False), ("@rudderstack/rudder-sdk-node", True)],
)
def test_node_clients_store_every_field(
    tmp_path: Path, peer_node: Path, package: str, device_time: bool
) -> None:
    # rudder-sdk-node gzips by default and labels the body x-www-form-urlencoded; it also sends
    # its device time as originalTimestamp beside the explicit timestamp.
    env = {**os.environ, "NODE_PATH": str(peer_node / "node_modules")}
    command = ["node", str(PEERS / "send_node.js"), package]
    send_and_check(tmp_path, package, command, env, device_time=device_time)


def test_raw_http_as_segment_documents_it(tmp_path: Path) -> None:
    sent = scenario("raw-http")
    context = sent[0]["context"]
    # The docs' /v1/batch example: typed items, one batch-level context for all of them.
    items = [{k: v for k, v in m.items() if k != "context"} for m in sent]
    body = orjson.dumps({"batch": items, "context": context})
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {auth}"}
    proc, url, db = served(tmp_path)
    try:
        reply = request(url, "POST", "/v1/batch", body, headers)
    finally:
        stderr = stop(proc)
    assert reply.status == 200, reply.body
    assert reply.json["stored"] == COUNT
    assert proc.returncode == 0, stderr
    check_store(db, [{**m, "context": context} for m in sent])
