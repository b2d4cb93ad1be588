"""Schedules that publish events, on SQLite (fired by the dispatcher) and PostgreSQL (the leader).

Each due time publishes one event, whose id names the schedule and the due time: firing again
(a crash between two steps, a second process) stores nothing new, a schedule missed for a while
fires once, and on PostgreSQL a leader whose epoch moved on fires nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ensemble.db import database as named_database
from ensemble.events import schedules
from ensemble.events.store import event_tables, recent_events
from tests.databases import upgraded

pytestmark = pytest.mark.integration


def make_due(db: object, seconds_ago: float) -> None:
    with event_tables(db) as conn:  # type: ignore[arg-type]
        conn.execute(
            "UPDATE ensemble_event_schedules SET next_at = ?", (time.time() - seconds_ago,)
        )


def test_a_due_schedule_publishes_one_event_per_due_time(database: str) -> None:
    db = named_database(database)
    row = schedules.add(db, "*/5 * * * *", "digest.due", {"topic": "bees"})
    assert row["id"] == "e1"
    assert schedules.fire_due(db) == []  # not due yet
    make_due(db, 3 * 86400)  # missed for three days: fires once, then waits for the next time
    (event,) = schedules.fire_due(db)
    assert event.type == "digest.due" and event.data == {"topic": "bees"}
    assert event.id.startswith("schedule-e1-") and event.source == "schedule:e1"
    assert schedules.fire_due(db) == []
    (listed,) = schedules.listing(db)
    assert listed["fired"] == 1 and listed["last_event"] == event.id
    assert [e["id"] for e in recent_events(db)] == [event.id]


def test_on_postgresql_only_the_current_leader_fires(postgres_url: str) -> None:
    db = named_database(upgraded(postgres_url))
    schedules.add(db, "* * * * *", "tick.now", {})
    make_due(db, 1)
    assert schedules.fire_due(db, leader_epoch=7) == []  # a leader that lost its post
    (event,) = schedules.fire_due(db, leader_epoch=0)  # the epoch `db upgrade` starts at
    assert event.type == "tick.now"


def test_the_cli_adds_lists_and_removes_event_schedules(database: str) -> None:
    ensemble = [sys.executable, "-m", "ensemble.cli.main"]

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ensemble, *argv, "--db", database], capture_output=True, text=True, timeout=120
        )

    added = cli("schedule", "publish", "0 7 * * *", "digest.due", "--data", '{"topic": "bees"}')
    assert added.returncode == 0 and added.stdout.startswith("schedule e1: 0 7 * * * digest.due")
    assert "event digest.due" in cli("schedule", "list").stdout
    bad = cli("schedule", "publish", "0 7 * *", "digest.due")
    assert bad.returncode == 2 and "not a cron expression" in bad.stderr
    bad_data = cli("schedule", "publish", "0 7 * * *", "digest.due", "--data", "[1]")
    assert bad_data.returncode == 2 and "must be a JSON object" in bad_data.stderr
    assert cli("schedule", "remove", "e1").returncode == 0
    missing = cli("schedule", "remove", "e1")
    assert missing.returncode == 2 and "no schedule e1" in missing.stderr
    assert cli("schedule", "list").stdout.strip() == "No schedules."
