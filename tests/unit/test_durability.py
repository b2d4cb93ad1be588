"""Every scenario pauses for a person and goes on the same way in each durability mode.

In LangGraph's style: parametrised over checkpointers (memory, SQLite) and durability modes
(`sync`, `async`, `exit`). A run that pauses keeps its pending question in every mode, and the
resumed run ends as the same run would have ended in `sync` mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command

from ensemble.context import Context
from ensemble.graphs.registry import SCENARIOS
from ensemble.workspace import Workspace

PAUSES = {
    "research": (
        lambda corpus: {
            "question": "How do bees make honey?",
            "corpus": corpus,
            "review_plan": True,
        },
        "review_plan",
        {"action": "approve"},
    ),
    "content": (
        lambda corpus: {"topic": "How bees make honey", "corpus": corpus, "target_words": 120},
        "approval",
        {"action": "approve"},
    ),
}
"""Each scenario's input that pauses for a person, the node it pauses in, and the answer."""


async def run_to_the_end(
    name: str, checkpointer: Any, workspace: Workspace, corpus: Path, durability: str, thread: str
) -> tuple[dict[str, Any], int]:
    """Run `name` until its pause, answer, and return the final values and the checkpoints."""
    make_input, gate, answer = PAUSES[name]
    graph = SCENARIOS[name].compile(checkpointer, workspace)
    config = {"configurable": {"thread_id": thread}}
    await graph.ainvoke(make_input(str(corpus)), config, context=Context(), durability=durability)
    paused = await graph.aget_state(config)
    assert paused.next == (gate,) and paused.interrupts[0].value["kind"]
    await graph.ainvoke(Command(resume=answer), config, context=Context(), durability=durability)
    done = await graph.aget_state(config)
    assert done.next == ()
    history = [s async for s in graph.aget_state_history(config)]
    return done.values, len(history)


@pytest.mark.parametrize("name", sorted(PAUSES))
async def test_a_paused_run_resumes_alike_in_every_durability_mode(
    name, checkpointer, durability, tmp_path, corpus_dir
):
    reference, saved_sync = await run_to_the_end(
        name, checkpointer, Workspace(db=tmp_path / "sync.db"), corpus_dir, "sync", "reference"
    )
    values, saved = await run_to_the_end(
        name,
        checkpointer,
        Workspace(db=tmp_path / "mode.db"),
        corpus_dir,
        durability,
        durability,
    )
    keys = SCENARIOS[name].output_keys
    assert {k: values.get(k) for k in keys if k != "published"} == {
        k: reference.get(k) for k in keys if k != "published"
    }
    if durability == "exit":
        assert saved < saved_sync  # only the pause and the end are saved
    else:
        assert saved == saved_sync
