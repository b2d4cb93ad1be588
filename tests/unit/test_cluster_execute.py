"""What a worker does with a claimed thread when it takes over: apply nothing twice.

`ensemble.cluster.execute` is the same on any saver, so these run on SQLite: a request records
the head checkpoint it applies to (`at`); a worker that finds the thread moved on continues from
the latest checkpoint instead of answering again, branching again or starting again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ensemble.cluster.execute import execute, fork_request, resume_request, start_request
from ensemble.cluster.runs import Claim
from ensemble.persistence import open_async_checkpointer
from ensemble.run_settings import resolve
from ensemble.runner import thread_config
from ensemble.workspace import Workspace

THREAD = "thread-1"


def claim(request: dict[str, Any], epoch: int = 1) -> Claim:
    return Claim(THREAD, "content", epoch, epoch, request)


def content_input(corpus: Path, out: Path) -> dict[str, Any]:
    return {"topic": "How bees make honey", "corpus": str(corpus), "output_dir": str(out)}


async def head(saver: Any) -> str:
    saved = await saver.aget_tuple(thread_config(THREAD))
    return str(saved.config["configurable"]["checkpoint_id"])


async def test_a_taken_over_resume_does_not_answer_twice(
    workspace: Workspace, corpus_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    settings = resolve(None, {"model": "offline"}, how="run")
    async with open_async_checkpointer(workspace.db) as saver:
        started = await execute(
            saver,
            workspace,
            claim(start_request(content_input(corpus_dir, out), settings, yes=False)),
        )
        assert started.status == "interrupted"  # waiting for the approval
        answer = resume_request(await head(saver), {}, {"action": "approve"}, yes=False)
        first = await execute(saver, workspace, claim(answer, epoch=2))
        assert first.status == "done" and first.output["outcome"] == "published"
        after_first = await head(saver)
        # A second worker takes the same request over after the first one finished it.
        again = await execute(saver, workspace, claim(answer, epoch=3))
        assert again.status == "done"
        assert await head(saver) == after_first  # nothing ran, nothing was written
    assert len(list(out.glob("*.md"))) == 1


async def test_a_taken_over_answer_is_not_given_to_the_next_question(
    workspace: Workspace, corpus_dir: Path, tmp_path: Path
) -> None:
    settings = resolve(None, {"model": "offline"}, how="run")
    request = start_request(content_input(corpus_dir, tmp_path / "out"), settings, yes=False)
    changes = {"action": "request_changes", "notes": "Say more about the waggle dance."}
    async with open_async_checkpointer(workspace.db) as saver:
        await execute(saver, workspace, claim(request))
        answer = resume_request(await head(saver), {}, changes, yes=False)
        first = await execute(saver, workspace, claim(answer, epoch=2))
        assert first.status == "interrupted"  # a second draft, a new question
        second_question = await head(saver)
        # Taken over after the answer was applied: the new question waits for a person.
        again = await execute(saver, workspace, claim(answer, epoch=3))
        assert again.status == "interrupted"
        assert await head(saver) == second_question


async def test_a_taken_over_start_continues_instead_of_starting_again(
    workspace: Workspace, corpus_dir: Path, tmp_path: Path
) -> None:
    settings = resolve(None, {"model": "offline"}, how="run")
    request = start_request(content_input(corpus_dir, tmp_path / "out"), settings, yes=True)
    async with open_async_checkpointer(workspace.db) as saver:
        done = await execute(saver, workspace, claim(request))
        assert done.status == "done"
        count = len([c async for c in saver.alist(thread_config(THREAD))])
        again = await execute(saver, workspace, claim(request, epoch=2))
        assert again.status == "done"
        assert len([c async for c in saver.alist(thread_config(THREAD))]) == count


async def test_a_taken_over_fork_is_not_branched_twice(
    workspace: Workspace, corpus_dir: Path, tmp_path: Path
) -> None:
    settings = resolve(None, {"model": "offline"}, how="run")
    request = start_request(content_input(corpus_dir, tmp_path / "out"), settings, yes=True)
    async with open_async_checkpointer(workspace.db) as saver:
        await execute(saver, workspace, claim(request))
        history = [c async for c in saver.alist(thread_config(THREAD))]
        early = history[-3].config["configurable"]["checkpoint_id"]  # just after the start
        fork = fork_request(await head(saver), early, {}, {}, yes=True)
        await execute(saver, workspace, claim(fork, epoch=2))
        branched = await head(saver)
        children = {c.parent_config["configurable"]["checkpoint_id"] for c in
                    [c async for c in saver.alist(thread_config(THREAD))] if c.parent_config
                    and c.parent_config["configurable"]["checkpoint_id"] == early}  # fmt: skip
        await execute(saver, workspace, claim(fork, epoch=3))  # the same fork, taken over
        assert await head(saver) == branched
        after = [c async for c in saver.alist(thread_config(THREAD))]
        parents = [
            c.parent_config["configurable"]["checkpoint_id"] for c in after if c.parent_config
        ]
        assert parents.count(early) == 2  # the original child and the one branch: no third
        assert children == {early}


async def test_a_run_killed_between_a_steps_writes_and_its_checkpoint_goes_on(
    workspace: Workspace, corpus_dir: Path
) -> None:
    """The first step's results are saved but not its checkpoint: `next` is empty, yet the run
    is not finished. A takeover applies the saved results and goes on instead of reporting a
    finished run with no output (`ensemble resume` reads the state the same way)."""
    from ensemble.graphs.registry import SCENARIOS
    from ensemble.runner import result_of

    settings = resolve(None, {"model": "offline"}, how="run")
    question = {"question": "How do bees make honey?", "corpus": str(corpus_dir)}
    request = start_request(question, settings, yes=True)
    async with open_async_checkpointer(workspace.db) as saver:
        real, calls = saver.aput, []

        async def dies_at_the_second_checkpoint(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("the process was killed here")
            return await real(*args, **kwargs)

        saver.aput = dies_at_the_second_checkpoint  # type: ignore[method-assign]
        killed = await execute(saver, workspace, Claim(THREAD, "research", 1, 1, request))
        saver.aput = real  # type: ignore[method-assign]
        assert killed.status == "failed"
        research = SCENARIOS["research"]
        snapshot = await research.compile(saver, workspace).aget_state(thread_config(THREAD))
        assert snapshot.next == () and snapshot.tasks  # what was misread as a finished run
        assert result_of(snapshot, research, THREAD).status == "failed"
        taken_over = await execute(saver, workspace, Claim(THREAD, "research", 2, 2, request))
    assert taken_over.status == "done" and taken_over.output
    assert "honey" in taken_over.output["report"].lower()
