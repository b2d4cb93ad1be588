"""The research scenario on a real local model: SmolLM2-135M served by llama-cpp-python.

A 135M model writes weak plans, notes and reviews; these tests check what must hold whatever it
writes: structure, bounds, citations that resolve to real passages, routing, resume after a
human review, streaming, and that no server process outlives the CLI. Never wording.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langgraph.types import Command

from ensemble.context import Context
from ensemble.corpus import CorpusIndex
from ensemble.graphs.registry import SCENARIOS
from ensemble.models import chat_model, llama_server, local
from ensemble.nodes.reviewer import Verdict
from ensemble.persistence import open_async_checkpointer
from ensemble.publishing.piece import count_words
from ensemble.workspace import Workspace

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason='llama-cpp-python is not installed: install the extra, pip install -e ".[local]"',
    ),
]

ENSEMBLE = str(Path(sys.executable).parent / "ensemble")
QUESTION = "Where do bees store honey and how do they make it?"
OUTCOMES = {"approved", "max_revisions", "stalled"}
ROLES = {"planner", "researcher", "synthesizer", "reviewer"}
LIMITS = {"max_researchers": 2, "max_revisions": 1}
"""Small bounds keep each run to a few dozen model calls on 2 cores."""
CLI_TIMEOUT = 150.0


@pytest.fixture(scope="module")
def local_server() -> Iterator[str]:
    """One llama server for the module, started the way a first model call starts it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(local.LOCAL_BASE_URL_ENV, raising=False)
        started = time.monotonic()
        url = llama_server.ensure_server(local.default_gguf())
        print(f"\nlocal model server ready in {time.monotonic() - started:.1f}s at {url}")
        try:
            yield url
        finally:
            llama_server.stop_local_servers()


@pytest.fixture
def context(local_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.delenv(local.LOCAL_BASE_URL_ENV, raising=False)
    return Context(model="local", search_k=3)


def run_input(corpus: Path, **extra: Any) -> dict[str, Any]:
    return {"question": QUESTION, "corpus": str(corpus), **LIMITS, **extra}


def assert_valid_result(values: dict[str, Any], db: str, corpus: Path) -> None:
    """The invariants of a finished research run, whatever the model wrote."""
    assert values["outcome"] in OUTCOMES
    assert 0 <= values["revision"] <= LIMITS["max_revisions"]
    assert 1 <= len(values["plan"]) <= LIMITS["max_researchers"]
    assert all(sq["question"].strip() for sq in values["plan"])
    report, sources = values["report"], values["sources"]
    assert report.startswith(f"# {QUESTION}\n")
    body, _, listing = report.partition("## Sources")
    assert listing, "the report has a source list"
    numbers = [s["n"] for s in sources]
    assert numbers == list(range(1, len(sources) + 1))
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert cited <= set(numbers), f"citations {cited - set(numbers)} match no source"
    index = CorpusIndex(db, corpus)
    try:
        for source in sources:
            passage = index.get(source["passage_id"])
            assert passage is not None, f"{source['passage_id']} is not in the corpus index"
            assert f"`{source['passage_id']}`" in listing
    finally:
        index.close()
    if values["outcome"] == "approved":
        assert "approved after" in report
    else:
        assert "> **Note:**" in report  # an honest note says why the review loop ended


def assert_notes_cite_retrieved_passages(values: dict[str, Any]) -> None:
    for note in values["notes"].values():
        assert set(note["cited"]) <= set(values["passages"]), note
        assert note["summary"].strip()


async def test_structured_call_names_the_function_and_parses(context: Context) -> None:
    """The server answers a tool call when tool_choice names it; ChatOpenAI parses it."""
    model = chat_model("local")
    runnable = model.with_structured_output(Verdict, method="function_calling", include_raw=True)
    started = time.monotonic()
    result = await runnable.ainvoke(
        [("system", "Review the report."), ("user", "Question: Q?\n\nReport: Bees make honey.")]
    )
    elapsed = time.monotonic() - started
    assert result["raw"].tool_calls[0]["name"] == "Verdict"
    assert isinstance(result["parsed"], Verdict), result["parsing_error"]
    print(f"structured call: {elapsed:.2f}s")


async def test_research_end_to_end_streams_tokens(
    context: Context, corpus_dir: Path, tmp_path: Path, workspace: Workspace
) -> None:
    nodes: list[str] = []
    chunks: dict[str, list[AIMessageChunk]] = {}
    started = time.monotonic()
    async with open_async_checkpointer(tmp_path / "checkpoints.db") as saver:
        graph = SCENARIOS["research"].compile(saver, workspace)
        config = {"configurable": {"thread_id": "local-e2e"}}
        async for mode, item in graph.astream(
            run_input(corpus_dir),
            config,
            context=context,
            stream_mode=["updates", "messages"],
        ):
            if mode == "updates":
                nodes.extend(item)
            else:
                message, meta = item
                if isinstance(message, AIMessageChunk):
                    chunks.setdefault(meta["langgraph_node"], []).append(message)
        state = await graph.aget_state(config)
    print(f"research run on the local model: {time.monotonic() - started:.1f}s")

    values = state.values
    assert not state.next
    assert_valid_result(values, workspace.db_path, corpus_dir)
    assert_notes_cite_retrieved_passages(values)
    # Routing: intake, planner, researchers, then write/review rounds, then finalize.
    assert nodes[:2] == ["intake", "planner"] and nodes[-1] == "finalize"
    assert nodes.count("reviewer") == values["revision"] + 1
    assert nodes.count("synthesizer") == nodes.count("reviewer")
    assert "researcher" in nodes and nodes.index("researcher") < nodes.index("synthesizer")
    # Streaming: the model's tokens arrive as chunks, from the agents that called it.
    assert set(chunks) <= ROLES and {"researcher", "synthesizer"} <= set(chunks)
    writer = chunks["synthesizer"]
    assert len(writer) > 1 and "".join(c.text for c in writer).strip()


async def test_resume_after_plan_review_interrupt(
    context: Context, corpus_dir: Path, tmp_path: Path, workspace: Workspace
) -> None:
    async with open_async_checkpointer(tmp_path / "checkpoints.db") as saver:
        graph = SCENARIOS["research"].compile(saver, workspace)
        config = {"configurable": {"thread_id": "local-review"}}
        paused = await graph.ainvoke(
            run_input(corpus_dir, review_plan=True, max_revisions=0), config, context=context
        )
        state = await graph.aget_state(config)
        assert state.next == ("review_plan",)
        (pending,) = paused["__interrupt__"]
        assert pending.value["kind"] == "plan_review"
        assert pending.value["plan"] == state.values["plan"]
        assert 1 <= len(pending.value["plan"]) <= LIMITS["max_researchers"]
        assert not state.values["notes"] and not state.values["report"]

        await graph.ainvoke(Command(resume={"action": "approve"}), config, context=context)
        state = await graph.aget_state(config)
    assert not state.next
    values = state.values
    assert values["plan"] == pending.value["plan"]  # approved as it was
    assert values["revision"] == 0
    assert_valid_result({**values, "revision": 0}, workspace.db_path, corpus_dir)
    assert {n["task_id"] for n in values["notes"].values() if n["round"] == 0} == {
        sq["id"] for sq in values["plan"]
    }


def llama_servers_of(parent: int) -> set[int]:
    """Pids of local model servers started by process `parent` (the launcher names it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        launched = len(argv) > 3 and b"llama_cpp.server" in argv[2]
        if launched and argv[3] == str(parent).encode() and "\nState:\tZ" not in status:
            found.add(int(entry.name))
    return found


def still_running(pids: set[int]) -> set[int]:
    running = set()
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if "\nState:\tZ" not in status:
            running.add(pid)
    return running


def run_cli(env: dict[str, str], corpus: Path, db: Path) -> tuple[dict[str, Any], set[int]]:
    """Run `ensemble run research --model local` as a process; watch the servers it starts."""
    command = [ENSEMBLE, "run", "research", QUESTION, "--model", "local", "--yes", "--json"]
    command += ["--db", str(db), "--corpus", str(corpus), "--quiet"]
    command += ["--max-researchers", "1", "--max-revisions", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + CLI_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        seen |= llama_servers_of(process.pid)
        time.sleep(0.2)
    try:
        out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "done", result
    assert result["output"]["outcome"] in OUTCOMES
    return result, seen


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_cli_with_model_local_leaves_no_server_running(
    local_server: str, corpus_dir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != local.LOCAL_BASE_URL_ENV}
    _result, seen = run_cli(env, corpus_dir, tmp_path / "cli.db")
    assert seen, "the CLI started its own local model server"
    deadline = time.monotonic() + 5
    while still_running(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not still_running(seen), f"llama server(s) {still_running(seen)} outlived the CLI"


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_cli_reuses_the_server_named_by_local_base_url(
    local_server: str, corpus_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, local.LOCAL_BASE_URL_ENV: local_server}
    _result, seen = run_cli(env, corpus_dir, tmp_path / "cli.db")
    assert not seen, "the CLI started a server although ENSEMBLE_LOCAL_BASE_URL named one"


async def test_content_pipeline_pauses_for_approval_then_publishes(
    context: Context, corpus_dir: Path, tmp_path: Path
) -> None:
    """The content scenario on the local model: a draft waits for a person, then is published."""
    db = tmp_path / "e.db"
    published = tmp_path / "published"
    brief = {
        "topic": "How bees make honey",
        "corpus": str(corpus_dir),
        "target_words": 100,
        "max_revisions": 0,
    }
    started = time.monotonic()
    async with open_async_checkpointer(db) as saver:
        graph = SCENARIOS["content"].compile(saver, Workspace(db=db))
        config = {"configurable": {"thread_id": "local-content"}}
        paused = await graph.ainvoke(brief, config, context=context)
        state = await graph.aget_state(config)
        assert state.next == ("approval",)
        (pending,) = paused["__interrupt__"]
        request = pending.value
        assert request["kind"] == "content_approval"
        assert request["title"].strip() and request["error"] is None
        assert request["word_count"] == count_words(request["draft"])
        assert len(request["sources"]) == len(state.values["sources"])
        assert not published.exists(), "nothing is published before the approval"
        drafting = time.monotonic() - started

        await graph.ainvoke(Command(resume={"action": "approve"}), config, context=context)
        state = await graph.aget_state(config)
    print(
        f"content on the local model: {drafting:.1f}s to approval, "
        f"{time.monotonic() - started:.1f}s in all"
    )

    values = state.values
    assert not state.next
    assert values["outcome"] == "published"
    assert values["piece"] == request["draft"]  # exactly the text the person approved
    numbers = [s["n"] for s in values["sources"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert {int(n) for n in re.findall(r"\[(\d+)\]", values["piece"])} <= set(numbers)
    slug = values["published"]["slug"]
    files = {published / f"{slug}.md", published / f"{slug}.html"}
    assert {Path(f) for f in values["published"]["files"]} == files
    assert set(published.iterdir()) == files
    html = (published / f"{slug}.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert (published / f"{slug}.md").read_text(encoding="utf-8").endswith(values["piece"])
