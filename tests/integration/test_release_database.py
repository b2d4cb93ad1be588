"""Threads a release left behind still show, resume and fork after every change to the state.

`tests/fixtures/release-*.db` are databases written by a release (`tests.fixtures.make_release_db`):
a paused and a finished thread of every scenario. Each is read twice: by this code as it is, and
as if the next release had changed every scenario's state (version 2, with a migration), which
makes every thread go through the migration on read.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ensemble.cli.main import main
from ensemble.corpus import open_corpus
from ensemble.db.state_versions import VERSION_KEY, StateVersion
from ensemble.graphs.registry import SCENARIOS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASES = sorted(FIXTURES.glob("release-*.db"))
ANSWERS = {
    "research": "approve",
    "content": "approve",
    "solver": json.dumps({"action": "skip", "result": "by hand"}),
}
"""What a person answers at each scenario's pause in the release database."""
OUTCOMES = {"research": "approved", "content": "published", "solver": "solved"}


def manifest(release: Path) -> list[dict[str, Any]]:
    """The threads a release database holds, as its manifest describes them."""
    return json.loads(release.with_suffix(".json").read_text(encoding="utf-8"))["threads"]


@pytest.fixture(scope="module", params=RELEASES, ids=[r.stem for r in RELEASES])
def indexed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A copy of a release database with the default corpus indexed (left out of the file)."""
    db = tmp_path_factory.mktemp("release") / "ensemble.db"
    shutil.copy(request.param, db)
    index = open_corpus(db)
    index.ensure()
    index.close()
    return db, request.param


@pytest.fixture(params=["as released", "next state version"])
def release(
    request: pytest.FixtureRequest,
    indexed: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, list[dict[str, Any]], list[str]]:
    """A private copy in a fresh working folder; for the second run, every state at v2."""
    db = tmp_path / "ensemble.db"
    shutil.copy(indexed[0], db)
    monkeypatch.chdir(tmp_path)  # where a content run publishes by default
    migrated: list[str] = []
    if request.param == "next state version":
        for name, scenario in SCENARIOS.items():
            current = scenario.state_version.current

            def step(values: dict[str, Any], name: str = name) -> dict[str, Any]:
                migrated.append(name)
                return values

            version = StateVersion(
                current + 1, {**scenario.state_version.migrations, current: step}
            )
            monkeypatch.setitem(
                SCENARIOS, name, dataclasses.replace(scenario, state_version=version)
            )
    return db, manifest(indexed[1]), migrated


def ensemble(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """One CLI command in this process; its `--json` result (it must succeed)."""
    code = main(
        [*argv, "--json", "--quiet"] if argv[0] in {"resume", "fork"} else [*argv, "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, (argv, out, err)
    return json.loads(out)


def test_every_thread_is_listed_and_shown_as_it_was_left(release, capsys) -> None:
    db, threads, migrated = release
    listed = {t["thread_id"]: t for t in ensemble(capsys, "threads", "--db", str(db))["threads"]}
    for thread in threads:
        row = listed[thread["thread_id"]]
        assert (row["scenario"], row["status"]) == (thread["scenario"], thread["status"])
        shown = ensemble(capsys, "show", thread["thread_id"], "--db", str(db))
        assert shown["status"] == thread["status"]
        if thread["status"] == "done":
            assert shown["values"]["outcome"] == thread["outcome"]
        history = ensemble(capsys, "history", thread["thread_id"], "--db", str(db))
        assert len(history["checkpoints"]) > 2
    if migrated:
        assert set(migrated) == set(OUTCOMES)


def test_every_paused_thread_resumes_to_its_end(release, capsys) -> None:
    db, threads, migrated = release
    paused = [t for t in threads if t["status"] == "interrupted"]
    for thread in paused:
        scenario = thread["scenario"]
        argv = ["resume", thread["thread_id"], "--db", str(db), "--answer", ANSWERS[scenario]]
        done = ensemble(capsys, *argv)
        assert done["status"] == "done", done
        assert done["output"]["outcome"] == OUTCOMES[scenario], done["output"]
    assert stamped(db, [t["thread_id"] for t in paused]) == {2 if migrated else 1}


def test_every_finished_thread_forks_from_its_middle(release, capsys) -> None:
    db, threads, _ = release
    for thread in (t for t in threads if t["status"] == "done"):
        history = ensemble(capsys, "history", thread["thread_id"], "--db", str(db))["checkpoints"]
        middle = history[len(history) // 2]["checkpoint_id"]
        forked = ensemble(
            capsys, "fork", thread["thread_id"], "--checkpoint", middle, "--db", str(db), "--yes"
        )
        assert forked["status"] == "done", forked
        assert forked["checkpoint_id"] != history[0]["checkpoint_id"]
        assert forked["output"]["outcome"] == thread["outcome"], forked["output"]


def stamped(db: Path, thread_ids: list[str]) -> set[Any]:
    """The state versions the threads' checkpoints record (None: written before versions)."""
    with sqlite3.connect(db) as conn:
        return {
            value
            for thread_id in thread_ids
            for (value,) in conn.execute(
                "SELECT json_extract(CAST(metadata AS TEXT), ?) FROM checkpoints "
                "WHERE thread_id = ?",
                (f"$.{VERSION_KEY}", thread_id),
            )
        }
