"""The `ensemble` CLI, run in-process: run, review, resume, history, fork, show, errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ensemble.cli.main import main

QUESTION = "How do bees make honey and pollinate crops?"


def cli(capsys, *argv: str) -> tuple[int, dict | str, str]:
    """Run the CLI; return (exit code, parsed JSON stdout or raw text, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def run_research(capsys, db, corpus_dir, *extra: str):
    return cli(
        capsys,
        "run",
        "research",
        QUESTION,
        "--db",
        str(db),
        "--corpus",
        str(corpus_dir),
        "--json",
        *extra,
    )


def checkpoint_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]


def test_run_to_completion(capsys, db, corpus_dir, tmp_path):
    out_file = tmp_path / "reports" / "report.md"
    code, result, err = run_research(capsys, db, corpus_dir, "--yes", "--out", str(out_file))
    assert code == 0, err
    assert result["status"] == "done"
    assert result["output"]["outcome"] == "approved"
    report = result["output"]["report"]
    assert "## Sources" in report and result["output"]["sources"]
    assert out_file.read_text() == report
    assert "[planner] finished" in err and "[researcher] started" in err


def test_review_plan_stops_without_terminal_then_resume_edits(capsys, db, corpus_dir):
    code, paused, err = run_research(capsys, db, corpus_dir, "--review-plan")
    assert code == 0
    assert paused["status"] == "interrupted"
    assert paused["interrupt"]["value"]["kind"] == "plan_review"
    assert "ensemble resume" in err
    thread = paused["thread_id"]

    edited = ["Where is honey stored?", "What is the waggle dance?"]
    answer = json.dumps({"action": "edit", "subquestions": edited})
    code, done, err = cli(capsys, "resume", thread, "--db", str(db), "--answer", answer, "--json")
    assert code == 0, err
    assert done["status"] == "done"
    assert [sq["question"] for sq in done["output"]["plan"]] == edited
    started = [line for line in err.splitlines() if line.startswith("[researcher] started")]
    assert sorted(line.split(": ", 1)[1] for line in started) == sorted(edited)  # once each


def test_invalid_answer_is_refused_and_changes_nothing(capsys, db, corpus_dir):
    _, paused, _ = run_research(capsys, db, corpus_dir, "--review-plan")
    before = checkpoint_count(db)
    for bad in ('{"action": "maybe"}', "not json", '{"action": "edit", "subquestions": []}'):
        code, out, err = cli(
            capsys, "resume", paused["thread_id"], "--db", str(db), "--answer", bad
        )
        assert code == 2
        assert err.startswith("ensemble: error:") and len(err.strip().splitlines()) == 1
    assert checkpoint_count(db) == before
    code, still, _ = cli(capsys, "show", paused["thread_id"], "--db", str(db), "--json")
    assert still["status"] == "interrupted"


def test_yes_approves_the_plan(capsys, db, corpus_dir):
    code, result, err = run_research(capsys, db, corpus_dir, "--review-plan", "--yes")
    assert code == 0 and result["status"] == "done"
    assert "[human] answered" in err


def test_threads_history_show(capsys, db, corpus_dir):
    _, result, _ = run_research(capsys, db, corpus_dir, "--yes", "--thread", "my-thread")
    code, threads, _ = cli(capsys, "threads", "--db", str(db), "--json")
    assert code == 0
    [row] = threads["threads"]
    assert row["thread_id"] == "my-thread" and row["scenario"] == "research"
    assert row["status"] == "done" and row["question"] == QUESTION

    code, history, _ = cli(
        capsys, "history", "my-thread", "--db", str(db), "--json", "--limit", "3"
    )
    assert code == 0 and len(history["checkpoints"]) == 3
    code, shown, _ = cli(capsys, "show", "my-thread", "--db", str(db), "--json")
    assert shown["values"]["report"] == result["output"]["report"]
    code, text, _ = cli(capsys, "show", "my-thread", "--db", str(db))
    assert "status      done" in text and "## Sources" in text


def test_fork_before_reviewer_makes_a_second_branch(capsys, db, corpus_dir):
    _, first, _ = run_research(capsys, db, corpus_dir, "--yes", "--thread", "t")
    _, history, _ = cli(capsys, "history", "t", "--db", str(db), "--json")
    before_review = next(c for c in history["checkpoints"] if c["next"] == ["reviewer"])
    old_head = history["checkpoints"][0]["checkpoint_id"]

    code, forked, err = cli(
        capsys,
        "fork",
        "t",
        "--db",
        str(db),
        "--checkpoint",
        before_review["checkpoint_id"],
        "--set",
        "max_revisions=0",
        "--set",
        'plan=["Where is honey stored?"]',
        "--json",
    )
    assert code == 0, err
    assert forked["status"] == "done"
    assert [sq["question"] for sq in forked["output"]["plan"]] == ["Where is honey stored?"]

    _, after, _ = cli(capsys, "history", "t", "--db", str(db), "--json", "--limit", "200")
    ids = {c["checkpoint_id"] for c in after["checkpoints"]}
    assert old_head in ids and forked["checkpoint_id"] in ids
    children = [c for c in after["checkpoints"] if c["parent_id"] == before_review["checkpoint_id"]]
    assert len(children) == 2  # the original branch and the fork
    _, old, _ = cli(capsys, "show", "t", "--db", str(db), "--checkpoint", old_head, "--json")
    assert old["values"]["report"] == first["output"]["report"]
    assert old["values"]["max_revisions"] == 2
    _, new, _ = cli(capsys, "show", "t", "--db", str(db), "--json")
    assert new["values"]["max_revisions"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "research", "   "], "question: must not be blank"),
        (["run", "research", "x" * 4001], "at most 4000 characters"),
        (["run", "research", "ok", "--max-researchers", "17"], "max_researchers"),
        (["run", "research", "ok", "--max-revisions", "-1"], "max_revisions"),
        (
            ["run", "research", "--input", '{"question": 5}'],
            "question: Input should be a valid string",
        ),
        (["run", "research", "--input", '{"question": "ok", "extra": 1}'], "extra"),
        (["run", "research", "--input", "[1]"], "--input must be a JSON object"),
        (["run", "research"], "missing the question"),
        (["run", "nope", "q"], "unknown scenario 'nope'"),
        (["run", "research", "ok", "--model", "gpt-5"], "unknown model spec"),
        (["run", "research", "ok", "--model", "offline?latency=x"], "latency must be a number"),
        (["run", "research", "ok", "--corpus", "/no/such/folder"], "corpus folder not found"),
        (["run", "research", "ok", "--max-concurrency", "0"], "--max-concurrency"),
        (["resume", "ghost"], "no database"),
        (["history", "ghost"], "no database"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(capsys, db, argv, message):
    code, out, err = cli(capsys, *argv, "--db", str(db))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not db.exists()


def test_unknown_thread_and_checkpoint(capsys, db, corpus_dir):
    run_research(capsys, db, corpus_dir, "--yes", "--thread", "t")
    before = checkpoint_count(db)
    for argv, message in [
        (["resume", "ghost"], "unknown thread 'ghost'"),
        (["show", "ghost"], "unknown thread 'ghost'"),
        (["fork", "ghost", "--checkpoint", "x"], "unknown thread 'ghost'"),
        (["fork", "t", "--checkpoint", "nope"], "unknown checkpoint 'nope'"),
        (["show", "t", "--checkpoint", "nope"], "unknown checkpoint 'nope'"),
        (["run", "research", "again", "--thread", "t"], "already exists"),
    ]:
        code, _, err = cli(capsys, *argv, "--db", str(db))
        assert code == 2 and message in err, (argv, err)
    _, history, _ = cli(capsys, "history", "t", "--db", str(db), "--json")
    first, checkpoint = (c["checkpoint_id"] for c in history["checkpoints"][-1:-3:-1])
    code, _, err = cli(
        capsys, "fork", "t", "--checkpoint", first, "--set", "max_revisions=1", "--db", str(db)
    )
    assert code == 2 and "before the run's input was read" in err
    for sets, message in [
        (["--set", "colour=1"], "cannot set colour"),
        (["--set", "max_revisions=9"], "max_revisions"),
        (["--set", "plan=[]"], "plan must be a non-empty"),
        (["--set", "novalue"], "FIELD=JSON"),
    ]:
        code, _, err = cli(capsys, "fork", "t", "--checkpoint", checkpoint, *sets, "--db", str(db))
        assert code == 2 and message in err, (sets, err)
    assert checkpoint_count(db) == before


def test_corrupt_database_is_reported_and_left_alone(capsys, tmp_path):
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    for argv in (["threads"], ["show", "t"], ["run", "research", "q"]):
        code, _, err = cli(capsys, *argv, "--db", str(db))
        assert code == 2 and "not a database" in err, err
    assert db.read_bytes() == before


def test_locked_database_is_reported(capsys, db, corpus_dir, monkeypatch):
    run_research(capsys, db, corpus_dir, "--yes", "--thread", "t")
    monkeypatch.setenv("ENSEMBLE_DB_TIMEOUT", "0.2")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for argv in (["run", "research", "q", "--corpus", str(corpus_dir)], ["resume", "t"]):
            code, _, err = cli(capsys, *argv, "--db", str(db))
            assert code == 2 and "locked" in err, err
        code, threads, _ = cli(capsys, "threads", "--db", str(db), "--json")
        assert code == 0 and threads["threads"][0]["thread_id"] == "t"  # readers still read
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_scenarios_lists_every_scenario_with_its_inputs(capsys):
    code, out, _ = cli(capsys, "scenarios")
    assert code == 0 and "research:" in out and "content:" in out
    assert "--max-researchers" in out and "--target-words" in out and "--output-dir" in out
    code, out, _ = cli(capsys, "scenarios", "--json")
    listed = out["scenarios"] if isinstance(out, dict) else json.loads(out)["scenarios"]
    assert listed["content"]["primary"] == "topic"
    names = {f["name"] for f in listed["content"]["inputs"]}
    assert {"topic", "format", "audience", "tone", "target_words", "items"} <= names
