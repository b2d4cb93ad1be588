"""`ensemble threads` (size, age), `ensemble threads delete` and `ensemble prune`, on SQLite and
PostgreSQL, through the CLI as a user types it.

Prune touches finished threads only: a thread waiting for a person keeps every checkpoint and
still resumes; a finished thread keeps its result (`show` is unchanged) and, on SQLite, every
branch of a fork; the file gets smaller. Delete removes a whole thread and its audit trail, and
an unknown id among those named deletes nothing. A listing keeps each thread's summary and reads
a thread through its graph again only once it has moved on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ensemble.cli.main import main
from ensemble.db import database as named_database
from ensemble.persistence import read_rows

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    exit_code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert exit_code == code, out + err
    return json.loads(out)


def start(capsys: pytest.CaptureFixture[str], db: str, corpus: Path, *argv: str) -> str:
    return str(cli(capsys, "run", *argv, "--corpus", str(corpus), "--db", db)["thread_id"])


def audit_rows(db: str, thread_id: str) -> int:
    from ensemble.audit import flush

    flush()
    rows = read_rows(db, "audit", "SELECT COUNT(*) FROM audit WHERE thread_id = ?", (thread_id,))
    return int(rows[0][0]) if rows else 0


def test_threads_show_size_and_filter_by_age(
    database: str, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = start(capsys, database, corpus_dir, "research", "How do bees make honey?", "--yes")
    (row,) = cli(capsys, "threads", "--db", database)["threads"]
    assert row["thread_id"] == thread and row["size"] > 1000
    assert cli(capsys, "threads", "--older-than", "1", "--db", database)["threads"] == []
    assert len(cli(capsys, "threads", "--older-than", "0", "--db", database)["threads"]) == 1


def test_delete_removes_whole_threads_and_an_unknown_id_deletes_nothing(
    database: str, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = start(capsys, database, corpus_dir, "research", "How do bees make honey?", "--yes")
    kept = start(capsys, database, corpus_dir, "research", "What is pollination?", "--yes")
    assert audit_rows(database, gone) > 0
    refused = cli(capsys, "threads", "delete", gone, "no-such-thread", "--db", database, code=2)
    assert "no-such-thread" in refused["error"] and "nothing was deleted" in refused["error"]
    assert {t["thread_id"] for t in cli(capsys, "threads", "--db", database)["threads"]} == {
        gone,
        kept,
    }
    assert cli(capsys, "threads", "delete", gone, "--db", database) == {"deleted": [gone]}
    assert [t["thread_id"] for t in cli(capsys, "threads", "--db", database)["threads"]] == [kept]
    assert audit_rows(database, gone) == 0 and audit_rows(database, kept) > 0
    missing = cli(capsys, "show", gone, "--db", database, code=2)
    assert "unknown thread" in missing["error"]


def test_prune_keeps_waiting_threads_results_and_branches(
    database: str, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = named_database(database)
    done = start(capsys, database, corpus_dir, "research", "How do bees make honey?", "--yes")
    waiting = start(
        capsys, database, corpus_dir, "research", "What is pollination?", "--review-plan"
    )
    forked = start(capsys, database, corpus_dir, "research", "What is the waggle dance?", "--yes")
    history = cli(capsys, "history", forked, "--db", database)["checkpoints"]
    cli(capsys, "fork", forked, "--checkpoint", history[3]["checkpoint_id"],
        "--set", "max_revisions=0", "--db", database)  # fmt: skip
    shown = cli(capsys, "show", done, "--db", database)
    before = {t["thread_id"]: t for t in cli(capsys, "threads", "--db", database)["threads"]}

    report = cli(capsys, "prune", "--db", database)
    pruned = {r["thread_id"]: r for r in report["pruned"]}
    assert waiting not in pruned
    after = {t["thread_id"]: t for t in cli(capsys, "threads", "--db", database)["threads"]}
    assert after[waiting]["checkpoints"] == before[waiting]["checkpoints"]
    assert after[done]["checkpoints"] == 1 and after[done]["size"] < before[done]["size"]
    assert cli(capsys, "show", done, "--db", database)["values"] == shown["values"]
    if db.is_postgres:  # LangGraph's keep_latest would drop a branch: the thread is left alone
        assert "branches" in pruned[forked]["note"]
        assert after[forked]["checkpoints"] == before[forked]["checkpoints"]
    else:
        heads = cli(capsys, "history", forked, "--db", database)["checkpoints"]
        assert len(heads) == 2  # each branch keeps its newest checkpoint
        assert report["bytes_after"] < report["bytes_before"]
    resumed = cli(capsys, "resume", waiting, "--answer", "approve", "--db", database)
    assert resumed["status"] == "done"
    assert cli(capsys, "prune", "--keep-last", "0", "--db", database, code=2)["status"] == "refused"


def test_threads_keep_summaries_until_a_thread_moves_on(
    database: str,
    corpus_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ensemble.cli.threads

    read: list[str] = []
    summarise = ensemble.cli.threads.summarise

    async def counting(db: Any, heads: Any, workspace: Any = None) -> Any:
        read.extend(head.thread_id for head in heads)
        return await summarise(db, heads, workspace)

    monkeypatch.setattr(ensemble.cli.threads, "summarise", counting)
    question = "What is pollination?"
    waiting = start(capsys, database, corpus_dir, "research", question, "--review-plan")
    first = cli(capsys, "threads", "--db", database)["threads"]
    assert [t["status"] for t in first] == ["interrupted"] and read == [waiting]
    assert cli(capsys, "threads", "--db", database)["threads"] == first and read == [waiting]

    cli(capsys, "resume", waiting, "--answer", "approve", "--db", database)
    (row,) = cli(capsys, "threads", "--db", database)["threads"]
    assert row["status"] == "done" and read == [waiting, waiting]
    kept = "SELECT thread_id, status FROM ensemble_thread_summaries"
    assert read_rows(database, "ensemble_thread_summaries", kept) == [(waiting, "done")]
