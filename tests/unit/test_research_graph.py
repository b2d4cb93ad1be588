"""The research graph with scripted agents, on in-memory and SQLite checkpointers."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from langgraph.types import Command

from ensemble.context import Context
from ensemble.corpus import open_corpus
from ensemble.errors import InvalidInputError
from ensemble.graphs.registry import SCENARIOS
from ensemble.workspace import Workspace
from tests.fakes import (
    ScriptedChatModel,
    plan_responder,
    researcher_responder,
    sequence,
    verdict,
    writer_responder,
)

QUESTIONS = ("Where is honey stored?", "How do bees pollinate crops?")


def make_context(register, db, *, planner=None, researcher=None, writer=None, reviewer=None):
    models = {
        "planner": ScriptedChatModel(responder=planner or plan_responder(*QUESTIONS)),
        "researcher": ScriptedChatModel(responder=researcher or researcher_responder()),
        "synthesizer": ScriptedChatModel(responder=writer or writer_responder()),
        "reviewer": ScriptedChatModel(responder=reviewer or sequence(verdict(True))),
    }
    context = Context(
        model="offline",
        role_models={role: register(m) for role, m in models.items()},
    )
    return context, models


def config(thread: str = "t1") -> dict:
    return {"configurable": {"thread_id": thread}}


def research_questions(model: ScriptedChatModel) -> Counter:
    """How many times the researcher model searched for each sub-question."""
    return Counter(
        messages[1].text.removeprefix("Sub-question: ")
        for messages, kwargs in model.calls
        if kwargs.get("tools")
    )


@pytest.fixture
def graph(checkpointer, workspace):
    return SCENARIOS["research"].compile(checkpointer, workspace)


async def test_plan_research_write_review(graph, register, corpus_dir, tmp_path):
    context, models = make_context(register, tmp_path / "index.db")
    out = await graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(corpus_dir)},
        config(),
        context=context,
    )
    assert out["outcome"] == "approved"
    assert [sq["question"] for sq in out["plan"]] == list(QUESTIONS)
    assert research_questions(models["researcher"]) == Counter(QUESTIONS)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", out["report"].split("## Sources")[0])}
    assert cited and cited == {s["n"] for s in out["sources"]}
    index = open_corpus(tmp_path / "index.db", corpus_dir)
    for source in out["sources"]:
        assert index.get(source["passage_id"]) is not None
    assert "Reviewed and approved after 0 revision rounds" in out["report"]


async def test_plan_review_edit_researches_exactly_those(graph, register, corpus_dir, tmp_path):
    context, models = make_context(register, tmp_path / "index.db")
    inp = {"question": "How do bees make honey?", "corpus": str(corpus_dir), "review_plan": True}
    await graph.ainvoke(inp, config(), context=context)
    state = await graph.aget_state(config())
    assert state.next == ("review_plan",)
    request = state.interrupts[0].value
    assert request["kind"] == "plan_review"
    assert [sq["question"] for sq in request["plan"]] == list(QUESTIONS)
    assert not models["researcher"].calls

    edited = ["What is wax made of?", "What is the waggle dance?", "What does the queen do?"]
    out = await graph.ainvoke(
        Command(resume={"action": "edit", "subquestions": edited}), config(), context=context
    )
    assert [sq["question"] for sq in out["plan"]] == edited
    assert research_questions(models["researcher"]) == Counter(edited)
    assert out["outcome"] == "approved"


async def test_plan_review_refuses_bad_answer_and_stays_paused(
    graph, register, corpus_dir, tmp_path
):
    context, models = make_context(register, tmp_path / "index.db")
    inp = {"question": "How do bees make honey?", "corpus": str(corpus_dir), "review_plan": True}
    await graph.ainvoke(inp, config(), context=context)
    for bad in ({"action": "maybe"}, "yes", {"action": "edit", "subquestions": []}):
        await graph.ainvoke(Command(resume=bad), config(), context=context)
        state = await graph.aget_state(config())
        assert state.next == ("review_plan",)
        assert "invalid plan-review answer" in state.interrupts[0].value["error"]
    assert not models["researcher"].calls
    out = await graph.ainvoke(Command(resume={"action": "approve"}), config(), context=context)
    assert out["outcome"] == "approved"
    assert research_questions(models["researcher"]) == Counter(QUESTIONS)


async def test_plan_review_cancel_ends_without_report(graph, register, corpus_dir, tmp_path):
    context, models = make_context(register, tmp_path / "index.db")
    inp = {"question": "How do bees make honey?", "corpus": str(corpus_dir), "review_plan": True}
    await graph.ainvoke(inp, config(), context=context)
    out = await graph.ainvoke(Command(resume={"action": "cancel"}), config(), context=context)
    assert out["outcome"] == "cancelled"
    assert out.get("report", "") == ""
    assert not models["researcher"].calls
    assert (await graph.aget_state(config())).next == ()


async def test_reviewer_rejects_twice_then_approves(graph, register, corpus_dir, tmp_path):
    reviewer = sequence(
        verdict(False, ["What is comb made of?"]),
        verdict(False, ["How is honey capped?"]),
        verdict(True),
    )
    context, models = make_context(register, tmp_path / "index.db", reviewer=reviewer)
    out = await graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(corpus_dir)},
        config(),
        context=context,
    )
    assert out["outcome"] == "approved"
    assert out["revision"] == 2
    assert len(models["reviewer"].calls) == 3
    searched = research_questions(models["researcher"])
    assert searched == Counter([*QUESTIONS, "What is comb made of?", "How is honey capped?"])
    state = await graph.aget_state(config())
    rounds = Counter(note["round"] for note in state.values["notes"].values())
    assert rounds == {0: 2, 1: 1, 2: 1}  # exactly two rounds of gap research, nothing redone


async def test_stalled_reviewer_ends_with_note(graph, register, corpus_dir, tmp_path):
    reviewer = sequence(verdict(False, ["What do drones eat?"]))
    context, models = make_context(register, tmp_path / "index.db", reviewer=reviewer)
    out = await graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(corpus_dir), "max_revisions": 5},
        config(),
        context=context,
    )
    assert out["outcome"] == "stalled"
    assert out["revision"] == 1
    assert len(models["reviewer"].calls) == 2
    assert "review stalled" in out["report"] and "What do drones eat?" in out["report"]


@pytest.mark.parametrize("max_revisions", [0, 1, 3])
async def test_max_revisions_is_never_exceeded(
    graph, register, corpus_dir, tmp_path, max_revisions
):
    gaps = iter(f"Open gap number {i}?" for i in range(100))
    context, models = make_context(
        register,
        tmp_path / "index.db",
        reviewer=lambda messages, kwargs: verdict(False, [next(gaps)]),
    )
    out = await graph.ainvoke(
        {
            "question": "How do bees make honey?",
            "corpus": str(corpus_dir),
            "max_revisions": max_revisions,
        },
        config(),
        context=context,
    )
    assert out["outcome"] == "max_revisions"
    assert out["revision"] == max_revisions
    assert len(models["reviewer"].calls) == max_revisions + 1
    assert f"max_revisions={max_revisions}" in out["report"]


async def test_failed_researcher_keeps_the_others_work(graph, register, corpus_dir, tmp_path):
    failures = {QUESTIONS[1]: 1}  # the second researcher fails once, then works

    def flaky(question: str) -> bool:
        if failures.get(question, 0) > 0:
            failures[question] -= 1
            return True
        return False

    context, models = make_context(
        register, tmp_path / "index.db", researcher=researcher_responder(fail_on=flaky)
    )
    inp = {"question": "How do bees make honey?", "corpus": str(corpus_dir)}
    out = await graph.ainvoke(inp, config(), context=context)
    assert out["outcome"] == "approved"
    state = await graph.aget_state(config())
    notes = state.values["notes"]
    failed = [n for n in notes.values() if n["error"]]
    assert len(failed) == 1 and "researcher failed" in failed[0]["error"]
    assert failed[0]["subquestion"] == QUESTIONS[1]
    # The sibling's work was kept (researched once); the failed one was retried as a gap.
    assert research_questions(models["researcher"]) == Counter({QUESTIONS[0]: 1, QUESTIONS[1]: 2})
    assert out["revision"] == 1
    retried = [n for n in notes.values() if n["round"] == 1]
    assert [n["subquestion"] for n in retried] == [QUESTIONS[1]] and retried[0]["cited"]


async def test_malformed_planner_output_falls_back_to_the_question(
    graph, register, corpus_dir, tmp_path
):
    from langchain_core.messages import AIMessage

    context, _ = make_context(
        register,
        tmp_path / "index.db",
        planner=lambda messages, kwargs: AIMessage(content="I cannot produce JSON, sorry"),
    )
    out = await graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(corpus_dir)},
        config(),
        context=context,
    )
    assert [sq["question"] for sq in out["plan"]] == ["How do bees make honey?"]
    assert out["outcome"] == "approved"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"question": "   "}, "question: must not be blank"),
        ({"question": "x" * 4001}, "at most 4000 characters"),
        ({"question": "ok", "max_researchers": 17}, "max_researchers"),
        ({"question": "ok", "max_revisions": "lots"}, "max_revisions"),
    ],
)
async def test_bad_input_is_refused_before_any_agent_runs(graph, register, tmp_path, bad, message):
    context, models = make_context(register, tmp_path / "index.db")
    with pytest.raises(InvalidInputError, match=message):
        await graph.ainvoke(bad, config(), context=context)
    assert not models["planner"].calls


def test_graph_exposes_typed_schemas(workspace):
    graph = SCENARIOS["research"].compile(None, workspace)
    schema = graph.get_input_jsonschema()
    assert set(schema["properties"]) == {
        "question",
        "max_researchers",
        "max_revisions",
        "review_plan",
        "corpus",
    }
    assert schema["properties"]["max_researchers"]["maximum"] == 16
    assert set(graph.get_output_jsonschema()["properties"]) >= {"report", "sources", "outcome"}


@pytest.mark.parametrize("cap", [1, 2])
async def test_researchers_respect_the_concurrency_cap(graph, register, corpus_dir, tmp_path, cap):
    import threading
    import time

    active, peak, lock = [0], [0], threading.Lock()
    inner = researcher_responder()

    def slow(messages, kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return inner(messages, kwargs)

    questions = [f"What about {w}?" for w in ("wax", "honey", "pollen", "queen")]
    context, _ = make_context(
        register, tmp_path / "index.db", planner=plan_responder(*questions), researcher=slow
    )
    context.max_concurrency = cap
    out = await graph.ainvoke(
        {"question": "Tell me about bees", "corpus": str(corpus_dir)}, config(), context=context
    )
    assert len(out["plan"]) == 4
    assert peak[0] == cap


async def test_checkpoints_stay_small_over_a_long_review_loop(register, corpus_dir, tmp_path):
    """Transcripts and passage texts stay out of the state: each checkpoint is small."""
    import sqlite3

    from ensemble.persistence import open_async_checkpointer

    gaps = iter(f"What about gap {i}?" for i in range(100))
    context, _ = make_context(
        register,
        tmp_path / "index.db",
        reviewer=lambda messages, kwargs: verdict(False, [next(gaps)]),
    )
    db = tmp_path / "growth.db"
    async with open_async_checkpointer(db) as saver:
        graph = SCENARIOS["research"].compile(saver, Workspace(db=db))
        out = await graph.ainvoke(
            {"question": "How do bees make honey?", "corpus": str(corpus_dir), "max_revisions": 5},
            config(),
            context=context,
        )
    assert out["revision"] == 5
    with sqlite3.connect(db) as conn:
        sizes = [
            n
            for (n,) in conn.execute(
                "SELECT length(checkpoint) FROM checkpoints ORDER BY checkpoint_id"
            )
        ]
        blobs = b"".join(b for (b,) in conn.execute("SELECT checkpoint FROM checkpoints"))
    assert len(sizes) > 20
    assert max(sizes) < 24 * 1024, max(sizes)
    assert b"search_corpus" not in blobs  # no tool-call transcript was checkpointed
    # Linear, not quadratic: the last checkpoint is not much bigger than the middle one.
    assert sizes[-1] < 2.5 * sizes[len(sizes) // 2]
