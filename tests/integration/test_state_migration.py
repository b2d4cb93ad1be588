"""On SQLite and on PostgreSQL: a paused thread of an older state version migrates and goes on."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ensemble.cli.main import main
from ensemble.db.state_versions import VERSION_KEY, StateVersion
from ensemble.graphs.registry import SCENARIOS
from tests.databases import is_postgres


def ensemble(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """One CLI command in this process; its `--json` result."""
    main([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


def set_version(db: str, thread: str, version: int | None) -> None:
    """Stamp every checkpoint of the thread with `version` (None: written before versions)."""
    if is_postgres(db):
        with psycopg.connect(db, autocommit=True) as conn:
            value = "metadata - %s" if version is None else "metadata || jsonb_build_object(%s, 1)"
            conn.execute(
                f"UPDATE checkpoints SET metadata = {value} WHERE thread_id = %s",
                (VERSION_KEY, thread),
            )
        return
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE checkpoints SET metadata = "
            "CAST(json_remove(CAST(metadata AS TEXT), ?) AS BLOB) WHERE thread_id = ?",
            (f"$.{VERSION_KEY}", thread),
        )


def versions(db: str, thread: str) -> set[Any]:
    """The state versions the thread's checkpoints record."""
    if is_postgres(db):
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT metadata -> %s FROM checkpoints WHERE thread_id = %s", (VERSION_KEY, thread)
            ).fetchall()
    else:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT json_extract(CAST(metadata AS TEXT), ?) FROM checkpoints "
                "WHERE thread_id = ?",
                (f"$.{VERSION_KEY}", thread),
            ).fetchall()
    return {value for (value,) in rows}


def test_a_paused_content_thread_of_v1_is_migrated_and_published(
    database: str, capsys, monkeypatch: pytest.MonkeyPatch, corpus_dir: Path, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    paused = ensemble(
        capsys, "run", "content", "How do bees make honey?", "--corpus", str(corpus_dir),
        "--target-words", "120", "--db", database,
    )  # fmt: skip
    assert paused["status"] == "interrupted", paused
    thread = paused["thread_id"]
    set_version(database, thread, None)
    calls: list[frozenset[str]] = []

    def v1_to_v2(values: dict[str, Any]) -> dict[str, Any]:
        calls.append(frozenset(values))
        return {**values, "title": values["title"] + " (v2)"} if "title" in values else values

    content = SCENARIOS["content"]
    monkeypatch.setitem(
        SCENARIOS,
        "content",
        dataclasses.replace(content, state_version=StateVersion(2, {1: v1_to_v2})),
    )
    shown = ensemble(capsys, "show", thread, "--db", database)
    assert shown["values"]["title"].endswith(" (v2)")
    assert frozenset({"title"}) in calls
    assert versions(database, thread) == {2}
    migrated = len(calls)
    history = ensemble(capsys, "history", thread, "--db", database)["checkpoints"]
    assert len(calls) == migrated and len(history) > 3  # once, where it is stored

    done = ensemble(capsys, "resume", thread, "--db", database, "--answer", "approve")
    assert done["status"] == "done" and done["output"]["outcome"] == "published", done
    assert done["output"]["title"].endswith(" (v2)") and "(v2) (v2)" not in done["output"]["title"]
    assert versions(database, thread) == {2}


def test_without_a_migration_the_thread_is_refused_and_unchanged(
    database: str, capsys, monkeypatch: pytest.MonkeyPatch, corpus_dir: Path
) -> None:
    paused = ensemble(
        capsys, "run", "research", "How do bees make honey?", "--review-plan",
        "--corpus", str(corpus_dir), "--db", database,
    )  # fmt: skip
    thread = paused["thread_id"]
    set_version(database, thread, None)
    research = SCENARIOS["research"]
    monkeypatch.setitem(
        SCENARIOS, "research", dataclasses.replace(research, state_version=StateVersion(2))
    )
    refused = ensemble(capsys, "resume", thread, "--db", database, "--answer", "approve")
    assert refused["status"] == "refused"
    assert f"thread {thread} holds research state v1; this release reads v2" in refused["error"]
    assert versions(database, thread) == {None}
