"""`ensemble threads` keeps each thread's summary, and never shows one the thread has moved past.

A summary is used while the thread's latest checkpoint and its saved writes are unchanged; a
thread that moved on (resumed, or a run killed after saving the question but not a checkpoint)
is read again through its graph.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

import ensemble.cli.threads
from ensemble.cli.main import main
from ensemble.thread_summaries import TABLE

QUESTION = "How do bees make honey?"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def start(capsys: pytest.CaptureFixture[str], db: Path, corpus: Path, *flags: str) -> str:
    argv = ["run", "research", QUESTION, "--db", str(db), "--corpus", str(corpus), "--quiet"]
    return str(cli(capsys, *argv, *flags)["thread_id"])


def listed(capsys: pytest.CaptureFixture[str], db: Path) -> dict[str, dict[str, Any]]:
    return {row["thread_id"]: row for row in cli(capsys, "threads", "--db", str(db))["threads"]}


def kept(db: Path) -> dict[str, str]:
    """The stored summaries: thread -> status."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute(f"SELECT thread_id, status FROM {TABLE}").fetchall())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "threads.db"


@pytest.fixture
def graphs_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads each listing reads through their graphs (the others come from the table)."""
    read: list[str] = []
    real = ensemble.cli.threads.summarise

    async def counting(db: Any, heads: Any, workspace: Any = None) -> Any:
        read.extend(head.thread_id for head in heads)
        return await real(db, heads, workspace)

    monkeypatch.setattr(ensemble.cli.threads, "summarise", counting)
    return read


def test_a_kept_summary_lists_exactly_what_the_graph_reads(
    capsys: pytest.CaptureFixture[str], db: Path, corpus_dir: Path, graphs_read: list[str]
) -> None:
    done = start(capsys, db, corpus_dir, "--yes")
    waiting = start(capsys, db, corpus_dir, "--review-plan")
    first = listed(capsys, db)
    assert sorted(graphs_read) == sorted([done, waiting])
    assert kept(db) == {done: "done", waiting: "interrupted"}
    graphs_read.clear()
    assert listed(capsys, db) == first and graphs_read == []
    assert first[done]["question"] == first[done]["input"] == QUESTION
    assert first[done]["outcome"] == "approved" and first[waiting]["outcome"] == ""


def test_a_resumed_thread_is_read_again_and_listed_as_done(
    capsys: pytest.CaptureFixture[str], db: Path, corpus_dir: Path, graphs_read: list[str]
) -> None:
    done = start(capsys, db, corpus_dir, "--yes")
    waiting = start(capsys, db, corpus_dir, "--review-plan")
    assert listed(capsys, db)[waiting]["status"] == "interrupted"

    cli(capsys, "resume", waiting, "--db", str(db), "--yes", "--quiet")
    graphs_read.clear()
    after = listed(capsys, db)
    assert graphs_read == [waiting]  # the finished thread's summary still holds
    assert after[waiting]["status"] == "done" and after[waiting]["outcome"] == "approved"
    assert after[waiting]["checkpoints"] > 4
    assert kept(db) == {done: "done", waiting: "done"}


def test_a_question_saved_without_a_new_checkpoint_changes_the_listing(
    capsys: pytest.CaptureFixture[str],
    db: Path,
    corpus_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    graphs_read: list[str],
) -> None:
    """A run killed before its question was saved is `failed`; `ensemble resume` asks again and
    saves the question beside the same checkpoint: the listing must now say `interrupted`."""
    real = AsyncSqliteSaver.aput_writes

    async def killed_before_the_question(self: Any, config: Any, writes: Any, *args: Any) -> Any:
        if any(channel == "__interrupt__" for channel, _ in writes):
            raise RuntimeError("the process was killed here")
        return await real(self, config, writes, *args)

    monkeypatch.setattr(AsyncSqliteSaver, "aput_writes", killed_before_the_question)
    argv = ["run", "research", QUESTION, "--db", str(db), "--corpus", str(corpus_dir)]
    assert main([*argv, "--review-plan", "--thread", "t", "--quiet"]) == 1
    monkeypatch.setattr(AsyncSqliteSaver, "aput_writes", real)
    before = listed(capsys, db)["t"]
    assert before["status"] == "failed"

    assert main(["resume", "t", "--db", str(db), "--quiet"]) == 0  # asks, and waits again
    capsys.readouterr()
    graphs_read.clear()
    after = listed(capsys, db)["t"]
    assert (after["checkpoints"], after["updated"]) == (before["checkpoints"], before["updated"])
    assert after["status"] == "interrupted" and graphs_read == ["t"]


def test_a_database_that_cannot_be_written_is_listed_and_keeps_nothing(
    capsys: pytest.CaptureFixture[str],
    db: Path,
    corpus_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread = start(capsys, db, corpus_dir, "--yes")
    monkeypatch.setenv("ENSEMBLE_DB_TIMEOUT", "0.2")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writes: readers read, nobody else writes
    try:
        assert listed(capsys, db)[thread]["status"] == "done"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with sqlite3.connect(db) as conn:
        made = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    assert made is None
    assert listed(capsys, db)[thread]["status"] == "done" and kept(db) == {thread: "done"}


def test_deleted_threads_are_forgotten(
    capsys: pytest.CaptureFixture[str], db: Path, corpus_dir: Path
) -> None:
    gone = start(capsys, db, corpus_dir, "--yes")
    listed(capsys, db)
    cli(capsys, "threads", "delete", gone, "--db", str(db))
    new = start(capsys, db, corpus_dir, "--yes")
    assert list(listed(capsys, db)) == [new] and kept(db) == {new: "done"}
