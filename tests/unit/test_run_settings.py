"""Run settings follow the thread: saved with each checkpoint, reused, overridden explicitly."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from ensemble.context import SETTINGS_FIELDS, Context, validate_context
from ensemble.errors import InvalidInputError, ModelSpecError
from ensemble.graphs.registry import SCENARIOS
from ensemble.run_settings import SETTINGS_KEY, for_thread, load, resolve, saved_in


def test_context_refuses_file_locations_and_unknown_names():
    with pytest.raises(InvalidInputError, match=r"context\.db_path: not a run setting"):
        validate_context({"db_path": "/tmp/x.db"})
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        validate_context({"max_concurrency": 0})
    with pytest.raises(InvalidInputError, match="search_k"):
        validate_context({"search_k": "many"})
    assert validate_context({"search_k": "3"}).search_k == 3
    assert "db_path" not in SETTINGS_FIELDS


def test_defaults_then_saved_then_overrides_with_origins():
    first = resolve(None, {"model": "offline?latency=0", "search_k": 3}, how="run")
    assert first.context.model == "offline?latency=0"
    assert first.origin["model"] == "run" and first.origin["max_concurrency"] == "default"
    saved = saved_in(first.metadata())
    assert saved is not None
    again = resolve(saved, {}, how="resume")
    assert again.context == first.context and again.origin == first.origin
    changed = resolve(saved, {"max_concurrency": 2}, how="fork")
    assert changed.context.max_concurrency == 2 and changed.origin["max_concurrency"] == "fork"
    assert changed.context.search_k == 3 and changed.origin["search_k"] == "run"


def test_saved_settings_win_over_a_changed_process_default(monkeypatch):
    saved = saved_in(resolve(None, {}, how="run").metadata())  # default: offline
    monkeypatch.setenv("ENSEMBLE_MODEL", "offline?latency=1")
    assert resolve(saved, {}, how="resume").context.model == "offline"
    assert resolve(None, {}, how="run").context.model == "offline?latency=1"


def test_a_model_whose_key_is_missing_is_refused():
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        resolve(None, {"model": "openai:gpt-4o-mini"}, how="run")
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        resolve(None, {"role_models": {"reviewer": "openai:gpt-4o-mini"}}, how="run")


def test_metadata_holds_no_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = resolve(None, {"model": "openai:gpt-4o-mini"}, how="run")
    assert "sk-very-secret" not in repr(settings.metadata())
    assert set(settings.metadata()) == {SETTINGS_KEY}


async def test_a_resumed_graph_run_reads_its_settings_back(corpus_dir, workspace):
    saver = InMemorySaver()
    graph = SCENARIOS["research"].compile(saver, workspace)
    config = {"configurable": {"thread_id": "t"}}
    started = resolve(None, {"search_k": 2}, how="run")
    await graph.ainvoke(
        {"question": "How do bees make honey?", "corpus": str(corpus_dir), "max_revisions": 0},
        {**config, "metadata": started.metadata()},
        context=started.context,
    )
    loaded = await load(saver, config)
    assert loaded is not None and loaded.context == started.context
    resumed = await for_thread(saver, config, {"max_concurrency": 1}, how="resume")
    assert resumed.context.search_k == 2 and resumed.origin["max_concurrency"] == "resume"
    assert await load(saver, {"configurable": {"thread_id": "nobody"}}) is None
    assert Context().search_k == 5
