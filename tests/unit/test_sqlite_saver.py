"""Ensemble's SQLite saver: prune and copy_thread on real scenario threads.

The conformance suite (tests/integration/test_checkpoint_conformance.py) checks the methods'
contract on synthetic checkpoints; here a paused research thread is pruned and still resumes,
a finished content thread (with its writing team's subgraph namespaces) is pruned and still
shows its result, and a copied thread resumes on its own (delete_for_runs needs the server's
run ids: the conformance suite covers it).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ensemble.cli.main import main
from ensemble.db.sqlite_saver import EnsembleSqliteSaver
from ensemble.persistence import open_async_checkpointer
from ensemble.runner import thread_config


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


async def checkpoints(db: Path, thread_id: str) -> dict[str, int]:
    """How many checkpoints each namespace of the thread has."""
    counts: dict[str, int] = {}
    async with open_async_checkpointer(db) as saver:
        assert isinstance(saver, EnsembleSqliteSaver)
        async with saver.conn.execute(
            "SELECT checkpoint_ns, COUNT(*) FROM checkpoints WHERE thread_id = ? GROUP BY 1",
            (thread_id,),
        ) as cursor:
            for ns, n in await cursor.fetchall():
                counts[ns] = n
    return counts


async def prune(db: Path, thread_id: str, strategy: str = "keep_latest") -> None:
    async with open_async_checkpointer(db) as saver:
        await saver.aprune([thread_id], strategy=strategy)


def test_a_paused_thread_pruned_to_its_latest_checkpoint_still_resumes(
    tmp_path: Path, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "e.db"
    paused = cli(
        capsys, "run", "research", "How do bees make honey?", "--corpus", str(corpus_dir),
        "--review-plan", "--db", str(db),
    )  # fmt: skip
    assert paused["status"] == "interrupted"
    thread = paused["thread_id"]
    assert asyncio.run(checkpoints(db, thread))[""] > 1
    asyncio.run(prune(db, thread))
    assert asyncio.run(checkpoints(db, thread)) == {"": 1}
    done = cli(capsys, "resume", thread, "--answer", "approve", "--db", str(db))
    assert done["status"] == "done" and "honey" in done["output"]["report"].lower()


def test_a_finished_thread_with_subgraphs_keeps_its_result(
    tmp_path: Path, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "e.db"
    out = tmp_path / "out"
    done = cli(
        capsys, "run", "content", "Honey bees", "--corpus", str(corpus_dir), "--yes",
        "--output-dir", str(out), "--db", str(db),
    )  # fmt: skip
    thread = done["thread_id"]
    before = asyncio.run(checkpoints(db, thread))
    assert any(":" in ns for ns in before), before  # the writing team's subgraph calls
    shown = cli(capsys, "show", thread, "--db", str(db))
    asyncio.run(prune(db, thread))
    after = asyncio.run(checkpoints(db, thread))
    assert after == {"": 1}  # the calls belonged to root checkpoints that are gone
    assert cli(capsys, "show", thread, "--db", str(db))["values"] == shown["values"]


def test_a_copied_thread_resumes_on_its_own(
    tmp_path: Path, corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "e.db"
    paused = cli(
        capsys, "run", "research", "How do bees make honey?", "--corpus", str(corpus_dir),
        "--review-plan", "--db", str(db),
    )  # fmt: skip
    source, copy = paused["thread_id"], "5f0c6d0e-1111-4b5a-9c2d-000000000001"

    async def copy_it() -> None:
        async with open_async_checkpointer(db) as saver:
            await saver.acopy_thread(source, copy)
            original = await saver.aget_tuple(thread_config(source))
            copied = await saver.aget_tuple(thread_config(copy))
            assert original is not None and copied is not None
            assert copied.checkpoint["id"] == original.checkpoint["id"]
            assert copied.pending_writes == original.pending_writes

    asyncio.run(copy_it())
    assert cli(capsys, "resume", copy, "--answer", "approve", "--db", str(db))["status"] == "done"
    assert cli(capsys, "show", source, "--db", str(db))["status"] == "interrupted"
