"""`ensemble eval research` as a user runs it: real processes, the offline model, no cache."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from ensemble.audit import totals

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")

QUESTIONS = """\
- id: with
  question: How does the with statement work in Python?
  expect: [pydoc:with, pydoc:context-managers, stdlib:contextlib.contextmanager]
- id: json-decode
  question: How does Python's json module decode JSON documents?
  expect: ["stdlib:json#", stdlib:json.loads, stdlib:json.decoder]
- id: unreachable
  question: How do I read a JSON file?
  expect: [pydoc:pass]
"""

TOTAL_KEYS = {
    "questions",
    "hit_rate",
    "precision",
    "citation_validity",
    "well_formed",
    "calls",
    "tokens",
    "seconds",
    "per_question",
}
ENTRY_KEYS = {
    "id",
    "hit",
    "precision",
    "cited",
    "citation_validity",
    "well_formed",
    "subquestions",
    "calls",
    "tokens",
    "seconds",
    "thread_id",
    "status",
}


def ensemble(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run in an empty folder with its own HOME and temp folder, so stray files would show."""
    env = dict(os.environ)  # the offline model, ENSEMBLE_CACHE=0 (the autouse fixture)
    env.update(HOME=str(cwd / "home"), TMPDIR=str(cwd / "tmp"))
    for folder in ("home", "tmp"):
        (cwd / folder).mkdir(exist_ok=True)
    return subprocess.run(
        [ENSEMBLE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def check_summary(summary: dict[str, Any]) -> None:
    assert TOTAL_KEYS <= set(summary)
    assert summary["questions"] == 3 and summary["model"] == "offline"
    entries = summary["per_question"]
    assert [e["id"] for e in entries] == ["with", "json-decode", "unreachable"]
    for entry in entries:
        assert ENTRY_KEYS <= set(entry)
        assert entry["status"] == "done", entry["error"]
        assert entry["calls"] > 0 and entry["tokens"] > 0 and entry["seconds"] > 0
        assert entry["subquestions"]
        assert isinstance(entry["hit"], bool)
    unreachable = entries[2]
    assert unreachable["hit"] is False and unreachable["precision"] in (0.0, None)
    assert summary["calls"] == sum(e["calls"] for e in entries)
    assert summary["tokens"] == sum(e["tokens"] for e in entries)
    assert summary["hit_rate"] == round(sum(e["hit"] for e in entries) / 3, 4)
    assert 0 <= summary["well_formed"] <= 1


def test_json_line_from_a_temporary_database_that_is_deleted(tmp_path: Path) -> None:
    (tmp_path / "set.yaml").write_text(QUESTIONS, encoding="utf-8")
    done = ensemble(tmp_path, "eval", "research", "--questions", "set.yaml", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1  # only the JSON line for scripts
    check_summary(json.loads(lines[0]))
    assert done.stderr.count("[eval] ") == 3  # one progress line per question
    assert files_under(tmp_path) == ["set.yaml"]  # nothing left in cwd, HOME or TMPDIR


def test_table_totals_and_json_last_with_threads_kept_in_db(
    tmp_path: Path, db_with_default_corpus: Path
) -> None:
    (tmp_path / "set.yaml").write_text(QUESTIONS, encoding="utf-8")
    db = str(db_with_default_corpus)
    done = ensemble(
        tmp_path, "eval", "research", "--questions", "set.yaml", "--db", db, "--quiet",
        "--min-hit-rate", "1",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the unreachable question misses the goal
    assert "hit rate" in done.stderr and "--min-hit-rate 1" in done.stderr
    lines = done.stdout.splitlines()
    header = lines[0].split()
    assert header == [
        "ID", "HIT", "PRECISION", "CITED", "VALID", "WELL-FORMED", "CALLS", "TOKENS", "SECONDS"
    ]  # fmt: skip
    assert set(lines[1]) <= {"-", " "}
    rows = [line.split() for line in lines[2:5]]
    assert [row[0] for row in rows] == ["with", "json-decode", "unreachable"]
    assert rows[2][1] == "no"
    assert lines[5].startswith("Total: 3 questions, model offline: hit rate ")
    summary = json.loads(lines[-1])
    check_summary(summary)
    for entry, row in zip(summary["per_question"], rows, strict=True):
        assert row[1] == ("yes" if entry["hit"] else "no")
        assert int(row[3]) == entry["cited"] and int(row[6]) == entry["calls"]
        assert totals(db, entry["thread_id"])["calls"] == entry["calls"]  # from the audit trail
    with sqlite3.connect(db) as conn:
        threads = {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert {e["thread_id"] for e in summary["per_question"]} <= threads


def test_a_bad_question_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "- id: a\n  question: What is a?\n  expect: [pydoc:a]\n- id: a\n  question: B?\n"
        "  expect: [pydoc:b]\n",
        encoding="utf-8",
    )
    db = tmp_path / "data" / "ensemble.db"
    done = ensemble(tmp_path, "eval", "research", "--questions", "bad.yaml", "--db", str(db))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "ensemble: error: bad.yaml:4: question 'a': duplicate id (first at bad.yaml:1)"
    )
    assert files_under(tmp_path) == ["bad.yaml"]
