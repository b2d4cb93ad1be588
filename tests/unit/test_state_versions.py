"""A thread written with an older state version is migrated when read, or refused in one line."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ensemble.cli.main import main
from ensemble.db.state_versions import MIGRATED_KEY, VERSION_KEY, StateVersion
from ensemble.graphs.registry import SCENARIOS


def ensemble(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run the CLI in this process (so a test can change a scenario's declared version)."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def versions(db: Path, thread: str) -> list[Any]:
    """The `state_version` of every checkpoint of a thread, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id", (thread,)
        ).fetchall()
    return [json.loads(raw).get(VERSION_KEY) for (raw,) in rows]


def pretend_written_by_v1(db: Path, thread: str) -> None:
    """Make a thread look as if the release before versions wrote it (no `state_version`)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE checkpoints SET metadata = "
            "CAST(json_remove(CAST(metadata AS TEXT), ?) AS BLOB) WHERE thread_id = ?",
            (f"$.{VERSION_KEY}", thread),
        )


def declare(monkeypatch: pytest.MonkeyPatch, name: str, version: StateVersion) -> None:
    """This release's `name` scenario is at `version`."""
    monkeypatch.setitem(
        SCENARIOS, name, dataclasses.replace(SCENARIOS[name], state_version=version)
    )


@pytest.fixture
def paused(capsys, tmp_path: Path, corpus_dir: Path) -> tuple[Path, str]:
    """A research thread waiting at its plan review."""
    db = tmp_path / "v.db"
    code, out, _ = ensemble(
        capsys, "run", "research", "How do bees make honey?", "--review-plan",
        "--corpus", str(corpus_dir), "--db", str(db),
    )  # fmt: skip
    assert code == 0 and out["status"] == "interrupted", out
    return db, out["thread_id"]


def test_every_checkpoint_records_its_state_version(paused: tuple[Path, str]) -> None:
    db, thread = paused
    assert set(versions(db, thread)) == {1}


def test_an_older_thread_is_migrated_when_read_and_then_resumes(
    paused: tuple[Path, str], capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, thread = paused
    pretend_written_by_v1(db, thread)
    seen: list[set[str]] = []

    def v1_to_v2(values: dict[str, Any]) -> dict[str, Any]:
        """A change of shape: every sub-question gets a trailing marker."""
        seen.append(set(values))
        if "plan" in values:
            values = {**values, "plan": [{**q, "question": q["question"] + " (v2)"}
                                         for q in values["plan"]]}  # fmt: skip
        return values

    declare(monkeypatch, "research", StateVersion(2, {1: v1_to_v2}))
    code, shown, err = ensemble(capsys, "show", thread, "--db", str(db))
    assert code == 0, err
    plan = [q["question"] for q in shown["values"]["plan"]]
    assert plan and all(q.endswith(" (v2)") for q in plan)
    assert set(versions(db, thread)) == {2}
    with sqlite3.connect(db) as conn:
        (raw,) = conn.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id DESC",
            (thread,),
        ).fetchone()
    assert json.loads(raw)[MIGRATED_KEY] == 1
    calls = len(seen)

    code, again, _ = ensemble(capsys, "show", thread, "--db", str(db))
    assert code == 0 and again["values"]["plan"] == shown["values"]["plan"]
    assert len(seen) == calls  # migrated once, where it is stored

    code, done, err = ensemble(capsys, "resume", thread, "--db", str(db), "--answer", "approve")
    assert code == 0 and done["status"] == "done", err
    assert [q["question"] for q in done["output"]["plan"]] == plan
    assert set(versions(db, thread)) == {2}  # the new checkpoints too


def test_writes_are_migrated_with_their_checkpoints_and_the_pause_survives(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, corpus_dir: Path
) -> None:
    """A content run paused at approval: its state and every node's saved update change shape."""
    db = tmp_path / "c.db"
    code, out, err = ensemble(
        capsys, "run", "content", "How do bees make honey?", "--corpus", str(corpus_dir),
        "--target-words", "120", "--db", str(db),
    )  # fmt: skip
    assert code == 0 and out["status"] == "interrupted", err
    thread = out["thread_id"]
    pretend_written_by_v1(db, thread)
    calls: list[frozenset[str]] = []

    def v1_to_v2(values: dict[str, Any]) -> dict[str, Any]:
        calls.append(frozenset(values))
        return {**values, "title": values["title"] + " (v2)"} if "title" in values else values

    declare(monkeypatch, "content", StateVersion(2, {1: v1_to_v2}))
    code, shown, err = ensemble(capsys, "show", thread, "--db", str(db))
    assert code == 0, err
    assert shown["values"]["title"].endswith(" (v2)")
    assert frozenset({"title"}) in calls  # the assembler's saved update, alone
    assert not any(k.startswith("__") or ":" in k for keys in calls for k in keys)
    assert set(versions(db, thread)) == {2}
    code, done, err = ensemble(capsys, "resume", thread, "--db", str(db), "--answer", "approve")
    assert code == 0 and done["output"]["outcome"] == "published", (err, done)
    assert done["output"]["title"].endswith(" (v2)")
    assert not done["output"]["title"].endswith(" (v2) (v2)")


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            StateVersion(3, {2: lambda v: v}),
            "holds research state v1; this release reads v3 and has no migration from v1",
        ),
        (
            StateVersion(2),
            "holds research state v1; this release reads v2 and has no migration from v1",
        ),
    ],
    ids=["gap", "none"],
)
def test_without_a_migration_the_thread_is_refused_in_one_line_and_left_as_it_was(
    paused: tuple[Path, str], capsys, monkeypatch, declared: StateVersion, message: str
) -> None:
    db, thread = paused
    pretend_written_by_v1(db, thread)
    before = db.read_bytes()
    declare(monkeypatch, "research", declared)
    for argv in (["show", thread], ["resume", thread, "--answer", "approve"], ["history", thread]):
        code, out, err = ensemble(capsys, *argv, "--db", str(db))
        assert code != 0 and out["status"] == "refused", (argv, out)
        assert message in out["error"] and f"thread {thread}" in out["error"]
        assert err.count("\n") == 1 and "Traceback" not in err
    assert set(versions(db, thread)) == {None}
    assert db.read_bytes() == before


def test_a_thread_from_a_newer_release_is_refused(paused, capsys) -> None:
    db, thread = paused
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE checkpoints SET metadata = "
            "CAST(json_set(CAST(metadata AS TEXT), ?, 7) AS BLOB)",
            (f"$.{VERSION_KEY}",),
        )
    code, out, _ = ensemble(capsys, "show", thread, "--db", str(db))
    assert code != 0
    assert "holds research state v7, newer than this release's v1" in out["error"]


async def test_the_servers_saver_checks_every_scenarios_state_version(
    paused: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`langgraph dev` compiles its graphs without a saver: its checkpointer learns the versions."""
    from ensemble.errors import StateVersionError
    from ensemble.server.checkpointer import checkpointer

    db, thread = paused
    pretend_written_by_v1(db, thread)
    monkeypatch.setenv("ENSEMBLE_DB", str(db))
    declare(monkeypatch, "research", StateVersion(2))
    async with checkpointer() as saver:
        assert set(saver.state_versions.known) == set(SCENARIOS)
        with pytest.raises(StateVersionError, match="this release reads v2"):
            await saver.aget_tuple({"configurable": {"thread_id": thread}})
