"""The content pipeline as a user runs it: real `ensemble` processes, the offline model.

The crash test kills the process (SIGKILL) right after the first file of a publication is
renamed into place, through a `sitecustomize` that only this test puts on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.databases import is_postgres

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
TOPIC = "How do bees make honey?"

KILLER = textwrap.dedent(
    """
    import os, signal
    _replace = os.replace
    def _replace_then_die(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if str(dst).endswith(".md"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = _replace_then_die
    """
)


def ensemble(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENSEMBLE, *argv],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ensemble.db"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of the test's `ensemble` processes."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def published_folder(db: str, workdir: Path) -> Path:
    """Where a run publishes by default: beside a SQLite file.

    PostgreSQL has no file: there the data folder (`.ensemble/`) of the working directory.
    """
    if is_postgres(db):
        return workdir / ".ensemble" / "published"
    return Path(db).parent / "published"


def start(db: str | Path, corpus: Path, *extra: str) -> dict[str, Any]:
    return result(
        ensemble(
            "run", "content", TOPIC, "--corpus", str(corpus), "--target-words", "120",
            "--db", str(db), "--json", *extra,
        )
    )  # fmt: skip


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_yes_runs_the_whole_pipeline_offline(db, corpus_dir):
    out = start(db, corpus_dir, "--yes")
    assert out["status"] == "done" and out["output"]["outcome"] == "published"
    published = files(db.parent / "published")
    slug = out["output"]["published"]["slug"]
    assert set(published) == {f"{slug}.md", f"{slug}.html"}
    assert published[f"{slug}.md"].startswith(b"---\n")
    text = ensemble("run", "content", TOPIC, "--corpus", str(corpus_dir), "--db", str(db), "--yes")
    assert text.returncode == 0 and "Published: " in text.stdout and "## Sources" in text.stdout


def test_a_crash_while_publishing_then_resume_gives_one_complete_set(
    database, corpus_dir, tmp_path, workdir
):
    db = database
    paused = start(db, corpus_dir)
    assert paused["status"] == "interrupted"
    assert paused["interrupt"]["value"]["kind"] == "content_approval"
    thread = paused["thread_id"]
    folder = published_folder(db, workdir)
    assert files(folder) == {}

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(hook)}
    killed = ensemble(
        "resume", thread, "--answer", '{"action": "approve"}', "--db", str(db), env=env
    )
    assert killed.returncode == -9, killed.stderr
    half = files(folder)
    assert len([n for n in half if n.endswith(".md")]) == 1
    assert not [n for n in half if n.endswith(".html")]

    done = result(ensemble("resume", thread, "--db", str(db), "--json"))
    assert done["status"] == "done" and done["output"]["outcome"] == "published"
    complete = files(folder)
    slug = done["output"]["published"]["slug"]
    assert set(complete) == {f"{slug}.md", f"{slug}.html"}  # no temp files, no duplicates
    assert complete[f"{slug}.html"].rstrip().endswith(b"</html>")

    again = result(ensemble("resume", thread, "--db", str(db), "--json"))
    assert again["status"] == "done" and files(folder) == complete


def test_a_fork_approved_again_is_a_second_publication(database, corpus_dir, workdir):
    db = database
    first = start(db, corpus_dir, "--yes")
    thread = first["thread_id"]
    folder = published_folder(db, workdir)
    before = files(folder)
    history = result(ensemble("history", thread, "--db", str(db), "--json", "--limit", "100"))
    at_approval = next(c for c in history["checkpoints"] if c["next"] == ["approval"])
    forked = result(
        ensemble(
            "fork", thread, "--checkpoint", at_approval["checkpoint_id"], "--set",
            "tone=\"playful\"", "--yes", "--db", str(db), "--json",
        )
    )  # fmt: skip
    assert forked["output"]["outcome"] == "published"
    after = files(folder)
    assert len(after) == 4 and {k: after[k] for k in before} == before
    assert forked["output"]["published"]["slug"].endswith("-2")


def test_a_bad_output_folder_is_refused_before_anything_is_stored(db, corpus_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    done = ensemble(
        "run", "content", TOPIC, "--corpus", str(corpus_dir), "--output-dir", str(blocker),
        "--db", str(db), "--yes",
    )  # fmt: skip
    assert done.returncode == 2 and "not a folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not db.exists()
