"""The model-response cache (a LangChain `BaseCache`): stable keys, round trips, bad rows."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from langchain_core.caches import BaseCache
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import create_model

from ensemble import persistence
from ensemble.resilience.cache import ModelCache, request, request_key

TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the corpus.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


def conversation(*, ids: str = "a") -> list:
    return [
        SystemMessage("You are a researcher.", id=f"{ids}-1"),
        HumanMessage("What is WAL?", id=f"{ids}-2"),
        AIMessage(
            "",
            id=f"{ids}-3",
            tool_calls=[{"name": "search", "args": {"query": "WAL"}, "id": "call_1"}],
        ),
        ToolMessage("Write-ahead logging.", tool_call_id="call_1", id=f"{ids}-4"),
    ]


def text_result() -> ChatResult:
    message = AIMessage(
        "WAL is write-ahead logging.",
        id="lc_run--1",
        response_metadata={"model_name": "gpt-x", "finish_reason": "stop"},
        usage_metadata={
            "input_tokens": 12,
            "output_tokens": 6,
            "total_tokens": 18,
            "input_token_details": {"cache_read": 4},
            "output_token_details": {"reasoning": 2},
        },
    )
    generation = ChatGeneration(message=message, generation_info={"finish_reason": "stop"})
    return ChatResult(
        generations=[generation],
        llm_output={"token_usage": {"total_tokens": 18}, "model_name": "gpt-x", "lc": "user data"},
    )


def tool_result() -> ChatResult:
    message = AIMessage(
        "",
        id="lc_run--2",
        tool_calls=[
            {
                "name": "search",
                "args": {"query": "WAL", "filters": {"year": [2020, 2021], "exact": True}},
                "id": "call_9",
            },
            {"name": "read", "args": {}, "id": "call_10"},
        ],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def without_ids(result: ChatResult) -> ChatResult:
    copy = result.model_copy(deep=True)
    for generation in copy.generations:
        generation.message.id = None
    return copy


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "ensemble.db")


# --------------------------------------------------------------------------- keys


def test_key_ignores_message_ids_and_what_does_not_change_the_answer():
    base = request_key("openai:gpt-x", conversation(), {"tools": [TOOL], "temperature": 0.2})
    assert len(base) == 64
    assert base == request_key(
        "openai:gpt-x",
        conversation(ids="b"),
        {
            "temperature": 0.2,
            "tools": [TOOL],
            "callbacks": [object()],
            "run_id": "r-1",
            "metadata": {"thread": "t"},
            "tags": ["x"],
            "stop": None,
        },
    )


def test_a_chunk_asks_the_same_as_its_message():
    chunk = AIMessageChunk(
        content="",
        tool_call_chunks=[
            {"name": "search", "args": '{"query": "WAL"}', "id": "call_1", "index": 0}
        ],
    )
    messages = conversation()
    assert request_key("m", messages, {}) == request_key(
        "m", [*messages[:2], chunk, messages[3]], {}
    )


@pytest.mark.parametrize(
    ("spec", "change", "kwargs"),
    [
        ("openai:gpt-y", None, {}),
        ("openai:gpt-x", "content", {}),
        ("openai:gpt-x", "tool_args", {}),
        ("openai:gpt-x", "tool_call_id", {}),
        ("openai:gpt-x", None, {"tools": [TOOL, {**TOOL, "function": {"name": "read"}}]}),
        ("openai:gpt-x", None, {"tool_choice": "search"}),
        ("openai:gpt-x", None, {"temperature": 0.7}),
        ("openai:gpt-x", None, {"max_tokens": 10}),
        ("openai:gpt-x", None, {"stop": ["\n"]}),
    ],
)
def test_key_changes_with_the_request(spec, change, kwargs):
    messages = conversation()
    if change == "content":
        messages[1] = HumanMessage("What is WAL mode?")
    elif change == "tool_args":
        messages[2] = AIMessage(
            "", tool_calls=[{"name": "search", "args": {"query": "wal"}, "id": "call_1"}]
        )
    elif change == "tool_call_id":
        messages[3] = ToolMessage("Write-ahead logging.", tool_call_id="call_2")
    base_kwargs = {"tools": [TOOL], "temperature": 0.2}
    base = request_key("openai:gpt-x", conversation(), base_kwargs)
    assert request_key(spec, messages, {**base_kwargs, **kwargs}) != base


def test_key_tells_apart_schemas_of_the_same_name():
    first = create_model("Answer", text=(str, ...))
    second = create_model("Answer", text=(str, ...), score=(int, ...))
    messages = [HumanMessage("hi")]
    keys = {
        request_key("m", messages, {"response_format": first}),
        request_key("m", messages, {"response_format": second}),
        request_key("m", messages, {"ls_structured_output_format": {"schema": second}}),
    }
    assert len(keys) == 3
    assert request_key("m", messages, {"response_format": first}) == request_key(
        "m", messages, {"response_format": create_model("Answer", text=(str, ...))}
    )


_OTHER_PROCESS = """
import json, sys, warnings
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration
from ensemble.resilience.cache import ModelCache, request_key

key = request_key(
    "openai:gpt-x",
    [HumanMessage("What is WAL?", id="other")],
    {"tools": [{"name": "search"}], "stop": {"END", "STOP", "\\n"}, "temperature": 0.2},
)
# langchain_core sets its warnings to "default" on import, which beats `-W error`.
warnings.simplefilter("error")
cache = ModelCache(sys.argv[1])
message = AIMessage(
    "", tool_calls=[{"name": "search", "args": {"q": [1, {"a": None}]}, "id": "c"}],
    usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
)
cache.update(key, "m", [ChatGeneration(message=message)])
got = cache.lookup(key, "m")
assert got is not None and got[0].message.tool_calls == message.tool_calls, got
print(key)
"""


def test_key_is_the_same_in_another_process_and_nothing_warns(tmp_path):
    """A fresh process (other hash seed) gets the same key; `load` there raises no warning."""
    mine = request_key(
        "openai:gpt-x",
        [HumanMessage("What is WAL?", id="mine")],
        {"tools": [{"name": "search"}], "stop": {"STOP", "\n", "END"}, "temperature": 0.2},
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(tmp_path / "other.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mine


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("make", [text_result, tool_result])
def test_round_trip_is_exact_but_for_message_ids(cache, make):
    result = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.update("k", "m", result.generations)
        got = cache.lookup("k", "m")
        again = cache.lookup("k", "m")
    assert got == without_ids(result).generations
    assert again == got
    message = got[0].message
    assert isinstance(message, AIMessage)
    assert message.id is None
    assert message.tool_calls == result.generations[0].message.tool_calls
    assert message.usage_metadata == result.generations[0].message.usage_metadata


def test_miss_on_unknown_key_and_missing_database(tmp_path):
    path = tmp_path / "absent.db"
    cache = ModelCache(path)
    assert cache.lookup("nothing", "m") is None
    assert not path.exists()
    cache.update("k", "m", text_result().generations)
    assert cache.lookup("nothing", "m") is None


def test_first_answer_stays(cache):
    cache.update("k", "m", text_result().generations)
    cache.update("k", "m", tool_result().generations)
    assert cache.lookup("k", "m") == without_ids(text_result()).generations
    assert cache.stats()["entries"] == 1


def test_hits_are_counted(cache):
    assert cache.stats() == {"entries": 0, "hits": 0, "session_hits": 0, "session_misses": 0}
    cache.update("a", "m", text_result().generations)
    cache.update("b", "m", tool_result().generations)
    for _ in range(3):
        cache.lookup("a", "m")
    cache.lookup("b", "m")
    cache.lookup("missing", "m")
    assert cache.stats() == {"entries": 2, "hits": 4, "session_hits": 4, "session_misses": 1}
    conn = persistence.connect(cache.path)
    try:
        rows = dict(conn.execute("SELECT key, hits FROM model_cache").fetchall())
    finally:
        conn.close()
    assert sorted(rows.values()) == [1, 3]
    # A fresh instance (a new process) sees the stored hits, not the session's.
    assert ModelCache(cache.path).stats()["hits"] == 4
    assert ModelCache(cache.path).stats()["session_hits"] == 0


_DISALLOWED = {
    "lc": 1,
    "type": "constructor",
    "id": ["langchain", "prompts", "prompt", "PromptTemplate"],
    "kwargs": {"template": "{x}", "input_variables": ["x"]},
}


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        json.dumps({"format": 999, "generations": [], "llm_output": None}),
        json.dumps({"format": 2, "generations": [{"lc": 1, "type": "constructor"}]}),
        json.dumps({"format": 2, "generations": [_DISALLOWED]}),
        json.dumps({"format": 2, "generations": []}),
        None,
    ],
)
def test_corrupt_row_is_a_miss_and_is_deleted(cache, stored):
    cache.update("k", "m", text_result().generations)
    conn = persistence.connect(cache.path)
    try:
        (key,) = conn.execute("SELECT key FROM model_cache").fetchone()
        with conn:
            conn.execute("DROP TABLE model_cache")
            conn.execute(
                "CREATE TABLE model_cache (key TEXT PRIMARY KEY, spec TEXT, result TEXT, "
                "created_at REAL, hits INTEGER)"
            )
            conn.execute("INSERT INTO model_cache VALUES (?, 'm', ?, 0, 0)", (key, stored))
    finally:
        conn.close()
    assert cache.lookup("k", "m") is None
    assert cache.stats()["entries"] == 0
    cache.update("k", "m", tool_result().generations)
    assert cache.lookup("k", "m") == without_ids(tool_result()).generations


def test_a_result_that_cannot_round_trip_is_not_stored(cache):
    message = AIMessage("x", response_metadata={"when": object()})
    cache.update("k", "m", [ChatGeneration(message=message)])
    assert cache.lookup("k", "m") is None
    assert cache.stats()["entries"] == 0


def test_database_without_the_table(tmp_path):
    path = tmp_path / "checkpoints.db"
    conn = persistence.connect(path)
    try:
        with conn:
            conn.execute("CREATE TABLE other (x INTEGER)")
    finally:
        conn.close()
    cache = ModelCache(path)
    assert cache.lookup("k", "m") is None
    assert cache.stats()["entries"] == 0
    cache.update("k", "m", text_result().generations)
    assert cache.lookup("k", "m") == without_ids(text_result()).generations


def test_an_unusable_database_is_a_miss_not_an_error(tmp_path):
    (tmp_path / "dir.db").mkdir()
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    for name in ("dir.db", "junk.db"):
        cache = ModelCache(tmp_path / name)
        cache.update("k", "m", text_result().generations)
        assert cache.lookup("k", "m") is None
        assert cache.stats()["entries"] == 0


def test_concurrent_puts_and_gets_from_threads(cache):
    results = {f"k{i}": (text_result() if i % 2 else tool_result()) for i in range(16)}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i, (key, result) in enumerate(results.items()):
                if i % 8 == worker or i % 3 == 0:  # some keys written by several threads
                    cache.update(key, "m", result.generations)
                cache.lookup(key, "m")
                cache.update("shared", "m", result.generations)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert cache.stats()["entries"] == len(results) + 1
    for key, result in results.items():
        assert cache.lookup(key, "m") == without_ids(result).generations
    assert cache.lookup("shared", "m") is not None


def test_for_path_is_one_instance_per_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = ModelCache.for_path("ensemble.db")
    assert ModelCache.for_path(tmp_path / "ensemble.db") is first
    assert ModelCache.for_path(tmp_path / "sub" / ".." / "ensemble.db") is first
    assert ModelCache.for_path(tmp_path / "other.db") is not first


def test_it_is_a_langchain_cache_and_can_be_cleared(cache):
    prompt, llm_string = request("openai:gpt-x", conversation(), {"temperature": 0.2})
    assert isinstance(cache, BaseCache)
    cache.update(prompt, llm_string, text_result().generations)
    assert cache.lookup(prompt, llm_string) == without_ids(text_result()).generations
    assert cache.lookup(prompt, request("openai:gpt-y", conversation(), {})[1]) is None
    cache.clear()
    assert cache.lookup(prompt, llm_string) is None


def test_writes_do_not_hold_the_database(cache):
    cache.update("k", "m", text_result().generations)
    cache.lookup("k", "m")
    conn = sqlite3.connect(cache.db.sqlite_path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
