"""`analytics demo`, run as a newcomer would: one command, no network, exit 0."""

from __future__ import annotations

from pathlib import Path

import orjson
from cli_helpers import cli_env, run_cli

SEED_EVENTS = {
    ("identify", "ilya@segment.io", None),
    ("track", "ilya@segment.io", "Played a Song"),
    ("track", "calvin@segment.io", "Made a Comment"),
    ("track", "ilya@segment.io", "Bought a game"),
    ("track", "ilya@segment.io", "Bought a shirt"),
    ("track", "calvin@segment.io", "Bought a shirt"),
    ("track", "peter@segment.io", "Bought a shirt"),
}


def test_demo_runs_the_seed_examples_and_shows_what_was_stored(tmp_path: Path) -> None:
    """Exit 0, a table of the stored events, and the `analytics events` command that shows
    the same events from the database it names."""
    db = tmp_path / "demo.db"
    result = run_cli(["demo", "--db", str(db)], env=cli_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "type" in out
    assert "receivedAt" in out
    assert "Made a Comment" in out
    assert "2012-10-17T18:58:57.9" in out  # the seed's log line, its timezone kept
    assert f"analytics events --db {db}" in out
    assert "All 7 events arrived." in out

    events = run_cli(["events", "--db", str(db), "--json"], env=cli_env())
    assert events.returncode == 0, events.stderr
    stored = [orjson.loads(line) for line in events.stdout.splitlines()]
    assert {(m["type"], m["userId"], m.get("event")) for m in stored} == SEED_EVENTS
    shirts = {m["userId"]: m for m in stored if m.get("event") == "Bought a shirt"}
    assert shirts["ilya@segment.io"]["originalTimestamp"] == "2012-10-17T18:58:57.911Z"
    assert shirts["calvin@segment.io"]["originalTimestamp"] == "2012-10-17T18:03:12.250Z"
    assert shirts["peter@segment.io"]["properties"]["revenue"] == 17.9
    identify = next(m for m in stored if m["type"] == "identify")
    assert identify["traits"] == {"subscriptionPlan": "Free", "friends": 30}
    assert identify["anonymousId"] == "ajsk2jdj29fj298"


def test_demo_without_db_uses_a_new_temporary_folder() -> None:
    """Without --db the database goes to a fresh folder, and the output says where."""
    result = run_cli(["demo"], env=cli_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("Database: "))
    path = Path(line.removeprefix("Database: "))
    assert path.name == "events.db"
    assert path.parent.name.startswith("analytics-demo-")
    assert path.exists()
    for item in sorted(path.parent.iterdir()):
        item.unlink()
    path.parent.rmdir()


def test_demo_with_an_unusable_database_says_so(tmp_path: Path) -> None:
    """A --db that cannot be opened: exit 1 with the reason, no traceback."""
    db = tmp_path / "missing-folder" / "demo.db"
    result = run_cli(["demo", "--db", str(db)], env=cli_env(), timeout=60)
    assert result.returncode == 1
    assert f"could not start the embedded collector with the database {db}" in result.stderr
    assert "Traceback" not in result.stderr
