"""A person at a terminal answers the plan review when the CLI asks (a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")


def read_until(fd: int, marker: str, timeout: float = 60) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {marker!r}; got:\n{seen}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
    return seen


def test_person_edits_the_plan_at_the_terminal(corpus_dir, tmp_path):
    db = tmp_path / "tty.db"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            ENSEMBLE,
            "run",
            "research",
            "How do bees make honey?",
            "--review-plan",
            "--corpus",
            str(corpus_dir),
            "--db",
            str(db),
            "--json",
            "--out",
            str(tmp_path / "r.md"),
        ],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    try:
        shown = read_until(leader, "[a]pprove, [e]dit or [c]ancel the plan?")
        assert "Plan for: How do bees make honey?" in shown
        os.write(leader, b"maybe\n")
        read_until(leader, "Not accepted")
        os.write(leader, b"e\n")
        read_until(leader, "one per line")
        os.write(leader, b"Where is honey stored?\nWhat is the waggle dance?\n\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["status"] == "done"
    assert [sq["question"] for sq in result["output"]["plan"]] == [
        "Where is honey stored?",
        "What is the waggle dance?",
    ]


def test_person_asks_for_changes_then_approves_the_draft_at_the_terminal(corpus_dir, tmp_path):
    db = tmp_path / "tty.db"
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [ENSEMBLE, "run", "content", "How do bees make honey?", "--corpus", str(corpus_dir)]
        + ["--target-words", "120", "--db", str(db), "--json"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    try:
        shown = read_until(leader, "[a]pprove, [r]equest changes, [e]dit or re[j]ect?")
        assert "Draft for approval:" in shown and "Sources:" in shown
        os.write(leader, b"maybe\n")
        read_until(leader, "Not accepted")
        os.write(leader, b"r\n")
        read_until(leader, "What should change?")
        os.write(leader, b"Mention the waggle dance.\n\n")
        read_until(leader, "[a]pprove, [r]equest changes, [e]dit or re[j]ect?")
        os.write(leader, b"a\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["status"] == "done" and result["output"]["outcome"] == "published"
    assert all(Path(f).is_file() for f in result["output"]["published"]["files"])


def test_one_ctrl_c_at_the_prompt_stops_and_says_how_to_resume(corpus_dir, tmp_path):
    """A terminal's Ctrl-C is a SIGINT to the process: one is enough, and the thread is named."""
    db = tmp_path / "tty.db"
    leader, follower = pty.openpty()
    argv = ["run", "research", "How do bees make honey?", "--review-plan"]
    argv += ["--corpus", str(corpus_dir), "--db", str(db)]
    proc = subprocess.Popen(
        [ENSEMBLE, *argv], stdin=follower, stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    try:
        shown = read_until(leader, "[a]pprove, [e]dit or [c]ancel the plan?")
        thread = shown.split("[run] thread ", 1)[1].split()[0]
        proc.send_signal(signal.SIGINT)
        said = read_until(leader, f"ensemble resume {thread}", timeout=15)  # read as it exits
        assert proc.wait(timeout=15) == 130
        assert "Traceback" not in said
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    resumed = subprocess.run(
        [ENSEMBLE, "resume", thread, "--db", str(db), "--answer", "approve", "--json"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["status"] == "done"
