"""The shipped example end to end, on SQLite and on PostgreSQL: folder -> digest -> brief ->
a person's approval -> published.

On SQLite `ensemble events run` runs both runs itself; on PostgreSQL it queues them and an
`ensemble worker` runs them, and the worker's `run.done` is what starts the brief. The person
approves with `ensemble resume` (SQLite) or `ensemble submit resume` (PostgreSQL, the thread is
the queue's); the brief's `run.done` then carries its trigger, and its delivery is done.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import ensemble.events
from ensemble.db import database as named_database
from ensemble.events.store import deliveries, recent_events

pytestmark = pytest.mark.integration

ENSEMBLE = [sys.executable, "-m", "ensemble.cli.main"]
EXAMPLES = Path(ensemble.events.__file__).parent / "examples"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [*ENSEMBLE, *argv], cwd=cwd, env=clean_env(), stdout=sink, stderr=subprocess.STDOUT
        )


def wait_for(check: Any, timeout: float, what: Any) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)
    return value


def test_a_dropped_document_is_digested_briefed_and_published_after_approval(
    database: str, tmp_path: Path
) -> None:
    db = named_database(database)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    processes = [
        start(
            ["events", "run", "--db", database, "--watch", str(inbox), "--watch-interval", "0.3",
             "--subscriptions", str(EXAMPLES / "digest.yaml")],
            tmp_path / "dispatcher.log", tmp_path,
        )
    ]  # fmt: skip
    if db.is_postgres:
        worker = ["worker", "--db", database, "--name", "w1", "--output-root", str(tmp_path)]
        processes.append(start(worker, tmp_path / "worker.log", tmp_path))

    def logs() -> str:
        return "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))

    try:
        wait_for(lambda: "watching" in logs(), 60, logs)
        shutil.copy(EXAMPLES / "winter-bees.md", inbox / "winter-bees.md")

        def brief_waiting() -> dict[str, Any] | None:
            found = deliveries(db, subscription="brief")
            return found[0] if found and found[0]["status"] == "waiting" else None

        brief = wait_for(brief_waiting, 120, logs)
        (digest,) = deliveries(db, subscription="digest")
        assert digest["status"] == "done"
        waiting = [e for e in recent_events(db) if e["type"] == "run.waiting"]
        assert [e["data"]["thread_id"] for e in waiting] == [brief["thread_id"]]
        question = waiting[0]["data"]["question"]
        assert question["title"] == "How honey bees survive the winter"

        approve = ["--answer", "approve", "--db", database, "--json"]
        if db.is_postgres:
            command = [*ENSEMBLE, "submit", "resume", brief["thread_id"], *approve]
        else:
            command = [*ENSEMBLE, "resume", brief["thread_id"], *approve]
        done = subprocess.run(
            command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: deliveries(db, subscription="brief")[0]["status"] == "done", 120, logs)
        finished = [
            e for e in recent_events(db, limit=50)
            if e["type"] == "run.done" and e["data"]["thread_id"] == brief["thread_id"]
        ]  # fmt: skip
        assert len(finished) == 1
        assert finished[0]["data"]["output"]["outcome"] == "published"
        assert finished[0]["data"]["trigger"]["subscription"] == "brief"
        published = finished[0]["data"]["output"]["published"]
        assert published["slug"] == "how-honey-bees-survive-the-winter"
        assert not published["already_published"]
        assert [Path(f).suffix for f in published["files"]] == [".md", ".html"]
        assert all(Path(f).is_file() for f in published["files"]), published
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    assert all(p.returncode == 0 for p in processes), logs()
    print(json.dumps({"database": db.kind, "events": len(recent_events(db, limit=50))}))


def test_a_postgresql_dispatcher_reconnects_after_its_connections_are_cut(
    postgres_url: str, tmp_path: Path
) -> None:
    """The server ends every session of the dispatcher (as a restart or a failover would); it
    says so, connects again, and the next event is delivered."""
    import psycopg

    from ensemble.events.event import make_event
    from ensemble.events.store import publish
    from tests.databases import upgraded

    url = upgraded(postgres_url)
    db = named_database(url)
    subscriptions = tmp_path / "subs.yaml"
    subscriptions.write_text(
        "subscriptions:\n  - name: note\n    event: note.added\n    scenario: research\n"
        '    concurrency: 4\n    input:\n      question: "{{ data.question }}"\n',
        encoding="utf-8",
    )
    log = tmp_path / "dispatcher.log"
    process = start(
        ["events", "run", "--db", url, "--subscriptions", str(subscriptions)], log, tmp_path
    )

    def queued(event_id: str) -> bool:
        found = [d for d in deliveries(db) if d["event_id"] == event_id]
        return bool(found) and found[0]["status"] == "started"  # no worker: it stays queued

    try:
        wait_for(lambda: "subscription(s)" in log.read_text(), 60, log.read_text)
        publish(
            db, make_event("note.added", {"question": "Why do bees dance?"}, source="t", id="a")
        )
        wait_for(lambda: queued("a"), 30, log.read_text)
        with psycopg.connect(url, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert cut is not None and cut[0] >= 2
        wait_for(lambda: "lost the database" in log.read_text(), 30, log.read_text)
        publish(db, make_event("note.added", {"question": "Why do bees buzz?"}, source="t", id="b"))
        wait_for(lambda: queued("b"), 30, log.read_text)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()
