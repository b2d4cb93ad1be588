"""The installed `ensemble` command as a user runs it: a real process, the real offline model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensemble.corpus import CorpusIndex
from tests.saved_writes import saved_writes

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
MULTI_PART = "How do json encoding, pickle protocols, csv dialects and sqlite3 connections work?"


def ensemble(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENSEMBLE, *argv], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def wait_for_saved_note(db: str, thread: str, task_id: str, timeout: float = 10) -> None:
    """Wait until the task's note is in the checkpoint writes (the finished event comes first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if saved_note(db, thread, task_id):
            return
        time.sleep(0.02)
    raise AssertionError(f"note of {task_id} was never saved")


def saved_note(db: str, thread: str, task_id: str) -> bool:
    """Whether a researcher's note is among the thread's saved task writes."""
    return any(task_id in notes for notes in saved_writes(db, thread, "notes"))


PYTHON_DOCS = {
    "json.md": "# json\n\nThe json module encodes Python objects as JSON text with dumps and "
    "decodes JSON documents with loads.",
    "pickle.md": "# pickle\n\nPickle protocols are numbered; a higher protocol writes a more "
    "compact binary form of Python objects.",
    "csv.md": "# csv\n\nA csv dialect groups the delimiter, quoting and line terminator that a "
    "reader and a writer use.",
    "sqlite3.md": "# sqlite3\n\nA sqlite3 connection opens a database file; its cursor runs SQL "
    "statements and commit saves them.",
}


@pytest.fixture
def python_corpus(tmp_path: Path) -> Path:
    """One short document per part of MULTI_PART.

    Small on purpose: on PostgreSQL every process indexes its corpus in memory, and the
    default corpus would cost each of them seconds.
    """
    folder = tmp_path / "python-corpus"
    folder.mkdir()
    for name, text in PYTHON_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_offline_research_on_default_corpus_cites_real_passages(db_with_default_corpus):
    done = ensemble(
        "run",
        "research",
        "How does Python's json module decode JSON documents?",
        "--yes",
        "--json",
        "--db",
        str(db_with_default_corpus),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "done"
    output = result["output"]
    report, sources = output["report"], output["sources"]
    assert "offline model" in report
    body = report.split("## Sources")[0]
    used = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    numbers = {s["n"] for s in sources}
    assert used and used <= numbers
    index = CorpusIndex(db_with_default_corpus)
    for source in sources:
        passage = index.get(source["passage_id"])
        assert passage is not None, source
        assert passage.title == source["title"]
        assert f"`{source['passage_id']}`" in report
    assert any("json" in s["passage_id"] for s in sources)
    # the README shows this very report as what `make demo` prints: keep it true
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"```markdown\n{report.strip()}\n```" in readme


def test_sigkill_during_research_then_resume_reruns_only_unfinished(database, python_corpus):
    db = database
    proc = subprocess.Popen(
        [
            ENSEMBLE,
            "run",
            "research",
            MULTI_PART,
            "--corpus",
            str(python_corpus),
            "--thread",
            "crash",
            "--db",
            db,
            "--yes",
            "--json",
            "--max-concurrency",
            "1",
            "--model",
            "offline?latency=0.4",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    finished_before: set[str] = set()
    planned: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("[planner] finished"):
            planned = line.split("sub-questions: ", 1)[1].strip().split(" | ")
        match = re.match(r"\[researcher\] finished (\S+):", line)
        if match:
            finished_before.add(match.group(1))
            wait_for_saved_note(db, "crash", match.group(1))
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(planned) >= 3 and len(finished_before) == 1

    shown = json.loads(ensemble("show", "crash", "--db", db, "--json").stdout)
    assert shown["status"] == "failed" and shown["next"].count("researcher") >= 2
    plan_ids = {sq["id"] for sq in shown["values"]["plan"]}
    saved = {tid for tid in plan_ids if saved_note(db, "crash", tid)}  # finished before the kill
    assert finished_before <= saved and saved != plan_ids

    resumed = ensemble("resume", "crash", "--db", db, "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "done"
    started_after = set(re.findall(r"^\[researcher\] started (\S+):", resumed.stderr, re.M))
    assert started_after == plan_ids - saved  # the finished ones were not run again
    assert "## Sources" in result["output"]["report"]
