"""Tests of the offline model: deterministic, extractive, and schema-valid."""

from __future__ import annotations

import datetime as dt
import enum
import json
import operator
import time
from typing import Annotated, Any, Literal

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ensemble.offline import OfflineChatModel
from ensemble.offline.extractive import key_phrases, split_units
from ensemble.offline.model import MODEL_NAME, OFFLINE_MARKER
from ensemble.offline.schema_fill import FillContext, SchemaFiller
from ensemble.text import sentences

QUESTION = "How does Python's asyncio event loop schedule coroutines, and what are common pitfalls?"
CONTEXT = """Background notes on concurrency in Python.

The asyncio event loop runs one coroutine at a time and switches at every await.
Coroutines are scheduled as tasks; the loop picks the next ready task from its queue.

A common pitfall is calling blocking functions inside coroutines, which stalls the loop.
Another pitfall is forgetting to await a coroutine, so it never runs.

The json module encodes and decodes JSON documents.
Threads share memory, processes do not."""
PASSAGES = (
    "[stdlib:asyncio#0] asyncio — Asynchronous I/O (stdlib)\n"
    "asyncio is a library to write concurrent code using the async/await syntax. "
    "It is used as a foundation for many Python asynchronous frameworks that provide "
    "high-performance network and web servers, database connection libraries and task "
    "queues. The event loop is the core of every asyncio application. Event loops run "
    "asynchronous tasks and callbacks. A common pitfall is calling blocking functions "
    "inside coroutines, which stalls the event loop.\n\n"
    "[stdlib:json#0] json — JSON encoder and decoder (stdlib)\n"
    "JSON is a lightweight data interchange format."
)


def search_corpus(query: str) -> str:
    """Search the document corpus and return passages with their ids."""
    return PASSAGES


def fetch_page(url: str, max_chars: int = 2000) -> str:
    """Fetch a web page."""
    return ""


def ask(model: OfflineChatModel | Any, *messages: BaseMessage) -> AIMessage:
    return model.invoke(list(messages))


def body_lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines[0] == OFFLINE_MARKER and lines[1] == ""
    return lines[2:]


def string_leaves(value: Any) -> list[str]:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in string_leaves(v)]
    if isinstance(value, (list, tuple, set)):
        return [s for v in value for s in string_leaves(v)]
    return []


# -- text answers ---------------------------------------------------------------------


def test_text_answer_is_marked_and_deterministic() -> None:
    messages = [SystemMessage("Answer briefly."), HumanMessage(CONTEXT), HumanMessage(QUESTION)]
    first = ask(OfflineChatModel(), *messages)
    second = ask(OfflineChatModel(), *messages)
    assert first.content == second.content
    assert first.response_metadata["model_name"] == MODEL_NAME
    assert first.response_metadata["offline"] is True
    assert first.response_metadata["finish_reason"] == "stop"
    lines = body_lines(str(first.content))
    assert (
        "A common pitfall is calling blocking functions inside coroutines, which stalls the loop."
        in lines
    )
    assert "Threads share memory, processes do not." not in lines


def test_every_line_of_a_text_answer_is_quoted_from_the_prompt() -> None:
    messages = [
        SystemMessage("You are a careful researcher. Never invent facts."),
        HumanMessage(CONTEXT),
        HumanMessage(f"{QUESTION}\nFocus on scheduling and on pitfalls of blocking calls."),
    ]
    lines = body_lines(str(ask(OfflineChatModel(), *messages).content))
    assert len(lines) >= 2
    sources = [str(m.content) for m in messages[1:]]
    for line in lines:
        assert any(line in source for source in sources), line
    assert not any("careful researcher" in line for line in lines)  # system text is not context


def test_answer_keeps_original_order_and_ignores_the_request_itself() -> None:
    lines = body_lines(
        str(ask(OfflineChatModel(), HumanMessage(CONTEXT), HumanMessage(QUESTION)).content)
    )
    assert QUESTION not in lines
    positions = [CONTEXT.index(line) for line in lines]
    assert positions == sorted(positions)


def test_citation_markers_survive_extraction() -> None:
    notes = (
        "Question: what stalls the asyncio event loop?\n\n"
        "Notes:\n"
        "[1] The asyncio event loop runs one coroutine at a time.\n"
        "[2] Blocking calls inside a coroutine stall the event loop.\n"
        "[3] The json module encodes JSON."
    )
    lines = body_lines(str(ask(OfflineChatModel(), HumanMessage(notes)).content))
    assert "[2] Blocking calls inside a coroutine stall the event loop." in lines
    assert "[1] The asyncio event loop runs one coroutine at a time." in lines
    assert not any(line.startswith("[3]") for line in lines)


def test_sentences_of_a_long_passage_keep_its_id() -> None:
    model = OfflineChatModel().bind_tools([search_corpus])
    call = model.invoke([HumanMessage(QUESTION)])
    result = ToolMessage(PASSAGES, tool_call_id=call.tool_calls[0]["id"])
    answer = model.invoke([HumanMessage(QUESTION), call, result])
    lines = body_lines(str(answer.content))
    assert lines
    for line in lines:
        if line not in PASSAGES:  # a quoted sentence carries the passage id as its citation
            assert line.endswith(" [stdlib:asyncio#0]")
            assert line.removesuffix(" [stdlib:asyncio#0]") in PASSAGES
    assert any("stalls the event loop" in line for line in lines)


def test_nothing_relevant_falls_back_to_the_request() -> None:
    answer = ask(OfflineChatModel(), HumanMessage("Tell me about zebras. Keep it short."))
    assert body_lines(str(answer.content)) == ["Tell me about zebras."]


def test_stop_sequences_cut_the_answer() -> None:
    answer = OfflineChatModel().invoke(
        [HumanMessage(CONTEXT), HumanMessage(QUESTION)], stop=["pitfall"]
    )
    assert "pitfall" not in str(answer.content)
    assert str(answer.content).startswith(OFFLINE_MARKER)


# -- usage, streaming, async ------------------------------------------------------------


def test_usage_metadata_counts_words() -> None:
    messages = [SystemMessage("Be brief."), HumanMessage(CONTEXT), HumanMessage(QUESTION)]
    answer = ask(OfflineChatModel(), *messages)
    usage = answer.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == sum(len(str(m.content).split()) for m in messages)
    assert usage["output_tokens"] == len(str(answer.content).split())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_stream_matches_invoke() -> None:
    model = OfflineChatModel()
    messages = [HumanMessage(CONTEXT), HumanMessage(QUESTION)]
    whole = model.invoke(messages)
    chunks = list(model.stream(messages))
    assert len(chunks) > 5 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert all(len(str(c.content).split()) <= 1 for c in chunks)
    assert "".join(str(c.content) for c in chunks) == whole.content
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert all(c.usage_metadata is None for c in chunks[:-1])
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.usage_metadata == whole.usage_metadata
    assert merged.response_metadata["finish_reason"] == "stop"
    assert merged.response_metadata["model_name"] == MODEL_NAME


@pytest.mark.asyncio
async def test_async_paths_match_sync() -> None:
    model = OfflineChatModel()
    messages = [HumanMessage(CONTEXT), HumanMessage(QUESTION)]
    whole = model.invoke(messages)
    assert (await model.ainvoke(messages)).content == whole.content
    text = "".join([str(c.content) async for c in model.astream(messages)])
    assert text == whole.content


@pytest.mark.asyncio
async def test_tool_calls_stream_as_one_chunk() -> None:
    model = OfflineChatModel().bind_tools([search_corpus], tool_choice="any")
    whole = model.invoke(QUESTION)
    chunks = [c async for c in model.astream(QUESTION)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls == whole.tool_calls
    assert merged.usage_metadata == whole.usage_metadata


@pytest.mark.asyncio
async def test_latency_delays_the_answer() -> None:
    model = OfflineChatModel(latency=0.2)
    start = time.monotonic()
    await model.ainvoke(QUESTION)
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    chunks = [c async for c in model.astream(QUESTION)]
    assert len(chunks) > 1
    assert time.monotonic() - start >= 0.19


def test_latency_in_sync_invoke() -> None:
    start = time.monotonic()
    OfflineChatModel(latency=0.1).invoke(QUESTION)
    assert time.monotonic() - start >= 0.1


# -- tool calling ---------------------------------------------------------------------


def test_tool_call_is_deterministic_and_fills_the_query() -> None:
    model = OfflineChatModel().bind_tools([search_corpus])
    first = model.invoke([HumanMessage(QUESTION)])
    second = OfflineChatModel().bind_tools([search_corpus]).invoke([HumanMessage(QUESTION)])
    assert first.content == ""
    assert first.tool_calls == second.tool_calls
    (call,) = first.tool_calls
    assert call["name"] == "search_corpus"
    assert call["id"] and call["id"].startswith("call_")
    assert call["args"] == {
        "query": "Python's asyncio event loop schedule coroutines common pitfalls"
    }
    assert first.response_metadata["finish_reason"] == "tool_calls"
    assert first.usage_metadata and first.usage_metadata["output_tokens"] > 0


def test_auto_calls_once_then_answers() -> None:
    for choice in (None, "auto"):
        model = OfflineChatModel().bind_tools([search_corpus], tool_choice=choice)
        call = model.invoke([HumanMessage(QUESTION)])
        assert call.tool_calls
        result = ToolMessage(PASSAGES, tool_call_id=call.tool_calls[0]["id"])
        answer = model.invoke([HumanMessage(QUESTION), call, result])
        assert not answer.tool_calls
        assert str(answer.content).startswith(OFFLINE_MARKER)
        # a new question starts a new round: search again
        again = model.invoke(
            [HumanMessage(QUESTION), call, result, answer, HumanMessage("And json?")]
        )
        assert again.tool_calls


@pytest.mark.parametrize(
    "choice",
    ["fetch_page", {"type": "function", "function": {"name": "fetch_page"}}],
)
def test_named_tool_choice_is_always_called(choice: Any) -> None:
    model = OfflineChatModel().bind_tools([search_corpus, fetch_page], tool_choice=choice)
    call = model.invoke(
        [HumanMessage("Read https://docs.python.org/3/library/asyncio.html please")]
    )
    assert call.tool_calls[0]["name"] == "fetch_page"
    assert call.tool_calls[0]["args"] == {
        "url": "https://docs.python.org/3/library/asyncio.html",
        "max_chars": 2000,
    }
    result = ToolMessage("page", tool_call_id=call.tool_calls[0]["id"])
    again = model.invoke([HumanMessage("Read it"), call, result])
    assert again.tool_calls[0]["name"] == "fetch_page"
    assert again.tool_calls[0]["id"] != call.tool_calls[0]["id"]


@pytest.mark.parametrize("choice", ["any", "required", True])
def test_forced_choice_calls_the_first_tool(choice: Any) -> None:
    model = OfflineChatModel().bind_tools([search_corpus, fetch_page], tool_choice=choice)
    call = model.invoke([HumanMessage(QUESTION)])
    result = ToolMessage(PASSAGES, tool_call_id=call.tool_calls[0]["id"])
    again = model.invoke([HumanMessage(QUESTION), call, result])
    assert call.tool_calls[0]["name"] == again.tool_calls[0]["name"] == "search_corpus"


def test_none_choice_answers_in_text_and_unknown_name_fails() -> None:
    answer = OfflineChatModel().bind_tools([search_corpus], tool_choice="none").invoke(QUESTION)
    assert not answer.tool_calls and str(answer.content).startswith(OFFLINE_MARKER)
    with pytest.raises(ValueError, match="not one of the bound tools"):
        OfflineChatModel().bind_tools([search_corpus], tool_choice="nope")


# -- structured output ----------------------------------------------------------------


class SubQuestion(BaseModel):
    """One sub-question of a plan."""

    question: str = Field(description="The sub-question to research.")
    rationale: str = Field(description="Why it matters.")


class Plan(BaseModel):
    """A research plan."""

    sub_questions: list[SubQuestion] = Field(min_length=2, max_length=6)


class Verdict(BaseModel):
    """A review verdict."""

    approved: bool
    gaps: list[str] = Field(description="Questions the report leaves open.")


class Triage(BaseModel):
    """Triage of a request."""

    kind: Literal["factual", "opinion", "howto"]
    priority: int = Field(ge=1, le=5)
    confidence: float = Field(gt=0.0, lt=1.0)


class Color(enum.Enum):
    """A color."""

    RED = "red"
    BLUE = "blue"


class Detail(BaseModel):
    """A nested detail."""

    topic: str
    score: float = Field(default=0.5, ge=0, le=1)
    color: Color = Color.BLUE


class Nested(BaseModel):
    """A model nesting others."""

    title: str = Field(max_length=20)
    detail: Detail
    details: list[Detail] = Field(default_factory=list, max_length=2)
    note: str | None = None
    flag: bool | None = None


class Keywords(BaseModel):
    """At least three keywords."""

    keywords: list[str] = Field(min_length=3)
    search_query: str


class Lengths(BaseModel):
    """Strings with both bounds."""

    headline: str = Field(min_length=30, max_length=40)
    tag: str = Field(min_length=1, max_length=5)
    tags: set[str] = Field(min_length=3)
    pair: tuple[str, int]
    when: dt.date
    count: int = Field(default=7, ge=0, le=3)
    ratio: Annotated[float, Field(multiple_of=0.25, gt=1)]


class TreeNode(BaseModel):
    """A recursive model."""

    label: str
    children: list[TreeNode] = Field(default_factory=list)
    parent: TreeNode | None = None


SCHEMAS = [Plan, Verdict, Triage, Nested, Keywords, Lengths, TreeNode]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@pytest.mark.parametrize(
    "request_text",
    [QUESTION, "asyncio", "", "What is it? Why?", "Compare json, pickle and marshal for caching."],
)
def test_structured_output_validates(schema: type[BaseModel], request_text: str) -> None:
    model = OfflineChatModel()
    value = model.with_structured_output(schema).invoke(
        [SystemMessage("Return JSON."), HumanMessage(CONTEXT), HumanMessage(request_text)]
    )
    assert isinstance(value, schema)
    again = (
        OfflineChatModel()
        .with_structured_output(schema)
        .invoke([SystemMessage("Return JSON."), HumanMessage(CONTEXT), HumanMessage(request_text)])
    )
    assert again == value


def test_plan_items_are_whole_questions() -> None:
    plan = OfflineChatModel().with_structured_output(Plan).invoke(QUESTION)
    assert isinstance(plan, Plan)
    # A list of questions gets whole questions (ensemble.offline.questions), never fragments;
    # with nothing but the question to go on, the plan is the question as asked.
    assert {q.question for q in plan.sub_questions} == {QUESTION}
    assert all(q.rationale == QUESTION for q in plan.sub_questions)
    assert all(s in QUESTION for s in string_leaves(plan))


def test_plan_is_padded_to_min_items_without_inventing() -> None:
    plan = OfflineChatModel().with_structured_output(Plan).invoke("asyncio")
    assert isinstance(plan, Plan)
    assert len(plan.sub_questions) == 2
    assert all("asyncio" in s for s in string_leaves(plan))


def test_a_list_is_of_questions_only_when_its_schema_says_so() -> None:
    class Notes(BaseModel):
        gaps: list[str]  # the reviewer's field name, but nothing says these are questions

    notes = OfflineChatModel().with_structured_output(Notes).invoke(QUESTION)
    assert isinstance(notes, Notes)
    assert notes.gaps and QUESTION not in notes.gaps
    assert all(s in QUESTION for s in notes.gaps)  # key phrases of the request instead


def test_verdict_and_keywords() -> None:
    verdict = OfflineChatModel().with_structured_output(Verdict).invoke(QUESTION)
    assert verdict == Verdict(approved=True, gaps=[QUESTION])
    keywords = OfflineChatModel().with_structured_output(Keywords).invoke("Explain asyncio.")
    assert isinstance(keywords, Keywords)
    assert len(keywords.keywords) == 3 and keywords.keywords[0] == "asyncio"
    assert keywords.search_query == "asyncio"


def test_scalar_rules() -> None:
    triage = OfflineChatModel().with_structured_output(Triage).invoke(QUESTION)
    assert triage == Triage(kind="factual", priority=1, confidence=0.5)
    nested = (
        OfflineChatModel()
        .with_structured_output(Nested)
        .invoke([HumanMessage(CONTEXT), HumanMessage(QUESTION)])
    )
    assert isinstance(nested, Nested)
    assert len(nested.title) <= 20 and nested.title and nested.title in CONTEXT + QUESTION
    assert nested.detail.score == 0.5 and nested.detail.color is Color.BLUE
    assert nested.note is not None and nested.flag is True
    assert all(
        s in CONTEXT or s in QUESTION for s in string_leaves(nested) if s not in ("blue", "red")
    )


def test_include_raw_and_method_kwarg() -> None:
    model = OfflineChatModel()
    out = model.with_structured_output(Verdict, include_raw=True, method="function_calling").invoke(
        QUESTION
    )
    assert isinstance(out, dict)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Verdict)
    raw = out["raw"]
    assert isinstance(raw, AIMessage) and raw.tool_calls[0]["name"] == "Verdict"
    assert raw.response_metadata["offline"] is True


def test_json_schema_dict_and_typeddict() -> None:
    schema = {
        "title": "Answer",
        "description": "An answer with sources.",
        "type": "object",
        "properties": {
            "answer": {"type": "string", "minLength": 5},
            "sources": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
            "mode": {"enum": ["short", "long"], "default": "long"},
            "score": {"type": "integer", "minimum": 3, "exclusiveMaximum": 10},
            "meta": {"$ref": "#/$defs/Meta"},
        },
        "required": ["answer", "sources"],
        "$defs": {"Meta": {"type": "object", "properties": {"lang": {"const": "en"}}}},
    }
    out = (
        OfflineChatModel()
        .with_structured_output(schema)
        .invoke([HumanMessage(CONTEXT), HumanMessage(QUESTION)])
    )
    assert isinstance(out, dict)
    assert len(out["answer"]) >= 5 and out["answer"] in CONTEXT
    assert 1 <= len(out["sources"]) <= 2
    assert out["mode"] == "long" and out["score"] == 3 and out["meta"] == {"lang": "en"}

    class Review(TypedDict):
        """A review."""

        approved: bool
        issues: Annotated[list[str], ..., "Problems found"]
        severity: Literal["low", "high"]

    review = OfflineChatModel().with_structured_output(Review).invoke(QUESTION)
    assert review == {
        "approved": True,
        "issues": ["Python's asyncio event loop schedule coroutines", "common pitfalls"],
        "severity": "low",
    }


def test_string_bounds_are_met_by_quoting() -> None:
    ctx = FillContext(
        request=QUESTION, units=split_units(CONTEXT), own=[False] * len(split_units(CONTEXT))
    )
    schema = {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 20},
            "long": {"type": "string", "minLength": 400, "maxLength": 420},
            "items": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 4},
        },
    }
    out = SchemaFiller(ctx).fill(schema)
    assert len(out["short"]) <= 20 and out["short"] in CONTEXT
    assert not out["short"].endswith(" ")
    assert 400 <= len(out["long"]) <= 420
    assert len(out["items"]) == 4 and all(len(i) <= 12 for i in out["items"])


# -- text utilities -------------------------------------------------------------------


def test_key_phrases_and_sentences() -> None:
    assert key_phrases(QUESTION) == [
        "Python's asyncio event loop schedule coroutines",
        "common pitfalls",
    ]
    assert key_phrases("What is the GIL?\nHow do C++ and C# differ?") == ["GIL", "C++", "C# differ"]
    text = "The loop runs tasks. It switches at await! Does it block? e.g. no [2]. Done."
    parts = sentences(text)
    assert parts == [
        "The loop runs tasks.",
        "It switches at await!",
        "Does it block? e.g. no [2].",
        "Done.",
    ]
    assert all(p in text for p in parts)


def test_split_units_inherits_leading_markers_per_paragraph() -> None:
    units = split_units(PASSAGES)
    assert units[0].text.startswith("[stdlib:asyncio#0]") and units[0].lead == ""
    assert len(units) > 4
    assert all(u.lead == "[stdlib:asyncio#0]" for u in units[1:-2])
    assert units[-1].text == "JSON is a lightweight data interchange format."
    assert units[-1].lead == "[stdlib:json#0]"
    plain = split_units("one line\n\nanother line")
    assert [u.render() for u in plain] == ["one line", "another line"]


# -- inside LangGraph -----------------------------------------------------------------


class GraphState(TypedDict):
    """State of the tiny test graph."""

    messages: Annotated[list[BaseMessage], operator.add]


@pytest.mark.asyncio
async def test_streams_message_chunks_from_a_langgraph_node() -> None:
    model = OfflineChatModel()

    async def answer(state: GraphState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(GraphState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    inputs = {"messages": [HumanMessage(CONTEXT), HumanMessage(QUESTION)]}
    chunks = [
        chunk
        async for chunk, meta in graph.astream(inputs, stream_mode="messages")
        if meta.get("langgraph_node") == "answer"
    ]
    assert len(chunks) > 5
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    expected = (await model.ainvoke(inputs["messages"])).content
    assert "".join(str(c.content) for c in chunks) == expected
    final = await graph.ainvoke(inputs)
    assert final["messages"][-1].content == expected
    assert json.dumps(final["messages"][-1].usage_metadata)
