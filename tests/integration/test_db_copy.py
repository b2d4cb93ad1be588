"""`ensemble db copy` on real databases: SQLite threads moved to PostgreSQL and back.

The source is one SQLite file per module, filled by the CLI itself with the offline model: a
finished research run (with the model cache on), a content run paused for approval, a content
run approved and published, and a solver run (its workers are subgraphs). Each test copies it
into a fresh PostgreSQL database (`postgres_url`) or a SQLite file of its own, then reads the
copy with the same commands a user would run there: `threads`, `history`, `stats`, `resume`,
`fork`. The source file is only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import ensemble
from ensemble.cli.main import main
from ensemble.persistence import open_async_checkpointer
from ensemble.publishing import approvals
from tests.corpus import write_corpus

pytestmark = pytest.mark.integration

EXIT_REFUSED = 2
WORKFLOW = Path(ensemble.__file__).resolve().parent / "tasks" / "examples" / "json_report.yaml"
PG_TABLES = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "audit",
    "publish_journal",
    "model_cache",
    "ensemble_keys",
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def ensemble_cli(*args: str | Path) -> Result:
    """Run one `ensemble` command in this process; its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def ok(*args: str | Path) -> Result:
    result = ensemble_cli(*args)
    assert result.code == 0, f"ensemble {' '.join(map(str, args))} failed:\n{result.err}"
    return result


@dataclass(frozen=True)
class Source:
    """The module's SQLite database and the threads in it."""

    db: Path
    published: Path
    research: str
    paused: str
    approved: str
    solver: str

    @property
    def threads(self) -> list[str]:
        return [self.research, self.paused, self.approved, self.solver]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """Four real threads made by the CLI on a SQLite file (offline model, no key)."""
    folder = tmp_path_factory.mktemp("copy-source")
    db = folder / "source.db"
    corpus = write_corpus(folder / "corpus")
    published = folder / "published"
    common = ("--db", db, "--corpus", corpus, "--json", "--quiet")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ENSEMBLE_MODEL", "offline")
        env.setenv("ENSEMBLE_CACHE", "0")
        env.setenv("ENSEMBLE_DB", str(folder / "unused.db"))
        env.delenv("OPENAI_API_KEY", raising=False)
        env.chdir(folder)
        research = ok("run", "research", "How do bees make honey?", "--yes", "--cache", *common)
        paused = ok("run", "content", "Bees and honey", "--output-dir", published, *common)
        approved = ok(
            "run", "content", "The honey harvest", "--output-dir", published, "--yes", *common
        )
        solver = ok("run", "solver", "--tasks", WORKFLOW, "--yes", *common)
    assert research.json()["status"] == "done"
    assert paused.json()["status"] == "interrupted"
    assert approved.json()["output"]["outcome"] == "published"
    assert solver.json()["status"] == "done"
    yield Source(
        db=db,
        published=published,
        research=research.json()["thread_id"],
        paused=paused.json()["thread_id"],
        approved=approved.json()["thread_id"],
        solver=solver.json()["thread_id"],
    )


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything a command writes by default (a `published/` folder) stays in the test's folder."""
    monkeypatch.chdir(tmp_path)


def upgraded(url: str) -> str:
    ok("db", "upgrade", "--db", url)
    return url


def threads(db: str | Path) -> dict[str, dict[str, Any]]:
    keys = ("scenario", "status", "outcome", "checkpoints", "updated")
    rows = ok("threads", "--json", "--db", db).json()["threads"]
    return {row["thread_id"]: {k: row.get(k) for k in keys} for row in rows}


def history(db: str | Path, thread_id: str) -> list[dict[str, Any]]:
    return ok("history", thread_id, "--limit", "1000", "--json", "--db", db).json()["checkpoints"]


def stats(db: str | Path, thread_id: str) -> dict[str, Any]:
    """`ensemble stats --json`, comparable across databases.

    Token sums as numbers (PostgreSQL's are printed as strings, "591"), and float sums rounded:
    the two databases add the same rows in a different order.
    """
    found = ok("stats", thread_id, "--json", "--db", db).json()
    for row in [*found["stats"], found["totals"]]:
        row.update({k: int(row[k]) for k in ("tokens_in", "tokens_out")})
        row.update({k: round(row[k], 9) for k in ("cost", "seconds")})
    return found


def links(db: str | Path, thread_id: str) -> dict[tuple[str, str], tuple[str | None, int]]:
    """Every checkpoint in every namespace -> (its parent, its pending writes), by the saver."""

    async def read() -> dict[tuple[str, str], tuple[str | None, int]]:
        found = {}
        async with open_async_checkpointer(str(db), create=False) as saver:
            async for saved in saver.alist({"configurable": {"thread_id": thread_id}}):
                conf = saved.config["configurable"]
                parent = (saved.parent_config or {}).get("configurable", {})
                assert not parent or parent["checkpoint_ns"] == conf["checkpoint_ns"]
                found[(conf["checkpoint_ns"], conf["checkpoint_id"])] = (
                    parent.get("checkpoint_id"),
                    len(saved.pending_writes or []),
                )
        return found

    return asyncio.run(read())


def pg_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in PG_TABLES
        }


def assert_same_threads(source: Source, db: str | Path, ids: list[str]) -> None:
    """The copy reads as the original: statuses, histories, parent links, audit totals."""
    original, copied = threads(source.db), threads(db)
    assert {t: copied[t] for t in ids} == {t: original[t] for t in ids}
    for thread_id in ids:
        assert history(db, thread_id) == history(source.db, thread_id)
        assert links(db, thread_id) == links(source.db, thread_id)
        assert stats(db, thread_id) == stats(source.db, thread_id)


def test_sqlite_threads_move_to_postgresql_whole(source: Source, postgres_url: str) -> None:
    url = upgraded(postgres_url)

    report = ok("db", "copy", "--from", f"sqlite:{source.db}", "--to", url, "--json").json()

    assert sorted(report["threads"]) == sorted(source.threads)
    assert report["skipped"] == []
    every = [link for t in source.threads for link in links(source.db, t).values()]
    assert report["checkpoints"] == len(every)
    assert report["writes"] == sum(writes for _, writes in every) > 0
    assert report["audit_rows"] > 0 and report["cache_rows"] > 0
    assert report["journal_rows"] == 1 and report["keys"] == 1  # the approved piece, its key
    assert_same_threads(source, url, source.threads)
    namespaces = {ns.split(":")[0] for t in source.threads for ns, _ in links(url, t)}
    assert {"", "worker", "research_team", "writing_team"} <= namespaces  # subgraphs came along
    with sqlite3.connect(source.db) as conn:
        audit = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
        cache = conn.execute("SELECT count(*) FROM model_cache").fetchone()[0]
    assert pg_counts(url)["audit"] == audit == report["audit_rows"]
    assert pg_counts(url)["model_cache"] == cache == report["cache_rows"]


def test_the_summary_line_names_both_databases_without_a_password(
    source: Source, postgres_url: str
) -> None:
    url = upgraded(postgres_url).replace("ensemble@", "ensemble:s3cret-pw@")  # trust: ignored

    result = ok("db", "copy", "--from", source.db, "--to", url, "--thread", source.research)

    assert result.out.startswith("copied 1 thread (")
    assert str(source.db) in result.out and "ensemble:***@" in result.out
    assert "s3cret-pw" not in result.out + result.err


def test_a_paused_content_thread_resumes_and_publishes_on_postgresql(
    source: Source, postgres_url: str
) -> None:
    url = upgraded(postgres_url)
    ok("db", "copy", "--from", source.db, "--to", url)
    before = set(source.published.iterdir())

    resumed = ok("resume", source.paused, "--answer", "approve", "--json", "--quiet", "--db", url)

    result = resumed.json()
    assert result["status"] == "done" and result["output"]["outcome"] == "published"
    files = {Path(f) for f in result["output"]["published"]["files"]}
    assert {f.suffix for f in files} == {".md", ".html"}
    assert set(source.published.iterdir()) - before == files
    assert threads(url)[source.paused]["status"] == "done"
    assert threads(source.db)[source.paused]["status"] == "interrupted"  # the source is unchanged


def test_forks_on_postgresql_use_the_copied_key_and_journal(
    source: Source, postgres_url: str
) -> None:
    url = upgraded(postgres_url)
    ok("db", "copy", "--from", source.db, "--to", url)
    research = history(url, source.research)
    early = next(c for c in reversed(research) if c["next"] and c["step"] >= 1)

    forked = ok("fork", source.research, "--checkpoint", early["checkpoint_id"], "--json",
                "--quiet", "--db", url)  # fmt: skip

    assert forked.json()["status"] == "done"
    assert len(history(url, source.research)) > len(research)
    assert len(history(source.db, source.research)) == len(research)
    # At the step before publishing, the approval in state is verified with the copied key and
    # the copied journal knows it was published: nothing is written twice.
    before_publish = next(c for c in history(url, source.approved) if c["next"] == ["publisher"])
    again = ok("fork", source.approved, "--checkpoint", before_publish["checkpoint_id"], "--json",
               "--quiet", "--db", url).json()  # fmt: skip
    assert again["status"] == "done", again
    assert again["output"]["published"]["already_published"] is True


def test_a_second_copy_writes_nothing(source: Source, postgres_url: str) -> None:
    url = upgraded(postgres_url)
    ok("db", "copy", "--from", source.db, "--to", url)
    counts = pg_counts(url)

    second = ok("db", "copy", "--from", source.db, "--to", url, "--json").json()

    assert sorted(second["skipped"]) == sorted(source.threads)
    assert second["threads"] == []
    added = ("checkpoints", "writes", "audit_rows", "journal_rows", "cache_rows", "keys")
    assert {k: second[k] for k in added} == dict.fromkeys(added, 0)
    assert pg_counts(url) == counts


def test_a_thread_of_the_same_id_with_another_history_is_refused(
    source: Source, postgres_url: str, tmp_path: Path
) -> None:
    url = upgraded(postgres_url)
    corpus = write_corpus(tmp_path / "corpus")
    ok("run", "research", "What do wasps eat?", "--thread", source.research, "--corpus", corpus,
       "--yes", "--quiet", "--db", url)  # fmt: skip
    counts = pg_counts(url)
    mine = history(url, source.research)

    refused = ensemble_cli("db", "copy", "--from", source.db, "--to", url)

    assert refused.code == EXIT_REFUSED
    assert f"thread {source.research!r} already exists" in refused.err
    assert "different history" in refused.err and "nothing was copied" in refused.err
    assert pg_counts(url) == counts
    assert history(url, source.research) == mine
    # The other threads can still go, named one by one.
    others = [t for t in source.threads if t != source.research]
    named = [arg for t in others for arg in ("--thread", t)]
    report = ok("db", "copy", "--from", source.db, "--to", url, *named, "--json").json()
    assert sorted(report["threads"]) == sorted(others)
    assert history(url, source.research) == mine


def test_a_postgresql_database_that_was_not_upgraded_is_refused(
    source: Source, postgres_url: str
) -> None:
    refused = ensemble_cli("db", "copy", "--from", source.db, "--to", postgres_url, "--json")

    assert refused.code == EXIT_REFUSED
    assert "ensemble db upgrade" in refused.err
    assert refused.json()["status"] == "refused"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_a_target_with_another_approval_key_refuses_content_threads(
    source: Source, postgres_url: str
) -> None:
    url = upgraded(postgres_url)
    approvals.sign(url, "some-thread", "some-approval", "some-draft")  # makes the target's key
    counts = pg_counts(url)

    refused = ensemble_cli("db", "copy", "--from", source.db, "--to", url)

    assert refused.code == EXIT_REFUSED
    assert "approval key" in refused.err and source.approved in refused.err
    assert pg_counts(url) == counts
    only = ok("db", "copy", "--from", source.db, "--to", url, "--thread", source.solver, "--json")
    assert only.json()["threads"] == [source.solver] and only.json()["keys"] == 0


def test_postgresql_back_to_sqlite_and_sqlite_to_sqlite(
    source: Source, postgres_url: str, tmp_path: Path
) -> None:
    url = upgraded(postgres_url)
    ok("db", "copy", "--from", source.db, "--to", url)
    back = tmp_path / "back.db"
    plain = tmp_path / "plain.db"

    from_pg = ok("db", "copy", "--from", url, "--to", f"sqlite:{back}", "--json").json()
    from_sqlite = ok("db", "copy", "--from", source.db, "--to", plain, "--json").json()

    for report, db in ((from_pg, back), (from_sqlite, plain)):
        assert sorted(report["threads"]) == sorted(source.threads)
        assert report["journal_rows"] == 1 and report["keys"] == 1
        assert_same_threads(source, db, source.threads)
    with sqlite3.connect(back) as a, sqlite3.connect(source.db) as b:
        key = "SELECT value FROM ensemble_keys WHERE name = 'approvals'"
        assert a.execute(key).fetchone() == b.execute(key).fetchone()


def test_a_copy_that_was_cut_off_is_completed(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target.db"
    ok("db", "copy", "--from", source.db, "--to", target)
    with sqlite3.connect(target) as conn:  # as if the copy had stopped half-way through a thread
        newest = conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
            "ORDER BY checkpoint_id DESC LIMIT 3",
            (source.solver,),
        ).fetchall()
        where = "WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id >= ?"
        cut = (source.solver, min(c for (c,) in newest))
        lost = conn.execute(f"DELETE FROM checkpoints {where}", cut).rowcount
        conn.execute(f"DELETE FROM writes {where}", cut)
        conn.execute("DELETE FROM audit WHERE thread_id = ?", (source.solver,))

    again = ok("db", "copy", "--from", source.db, "--to", target, "--json").json()

    assert again["threads"] == [source.solver]
    assert sorted(again["skipped"]) == sorted(t for t in source.threads if t != source.solver)
    assert again["checkpoints"] == lost == 3 and again["audit_rows"] > 0
    assert_same_threads(source, target, source.threads)


def test_unknown_threads_and_a_copy_into_itself_are_refused(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target.db"

    unknown = ensemble_cli("db", "copy", "--from", source.db, "--to", target, "--thread", "nope")
    itself = ensemble_cli("db", "copy", "--from", source.db, "--to", f"sqlite:{source.db}")

    assert unknown.code == itself.code == EXIT_REFUSED
    assert "no thread 'nope'" in unknown.err and not target.exists()
    assert "into itself" in itself.err
