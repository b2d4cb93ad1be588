"""Pure building blocks: citations, plans, plan answers, review decisions, models, persistence."""

from __future__ import annotations

import pytest

from ensemble import settings
from ensemble.errors import DatabaseError, InvalidInputError, ModelSpecError
from ensemble.models import chat_model, register_model, unregister_model
from ensemble.nodes.citations import attribute, drop_unknown, numbers_in, passage_ids_in, renumber
from ensemble.nodes.plan_review import PLAN_REVIEW, Approve, Cancel, Edit
from ensemble.nodes.planner import SubQuestionDraft, make_plan, plan_from_texts
from ensemble.nodes.reviewer import decide
from ensemble.offline import OfflineChatModel
from ensemble.persistence import list_threads, open_checkpointer
from ensemble.state.research import ResearchState, Review


def test_citation_helpers():
    text = "Bees make honey [file:honey.txt#1]. Wax [file:hive.html#1][file:honey.txt#1] and [3]."
    assert passage_ids_in(text) == ["file:honey.txt#1", "file:hive.html#1"]
    assert numbers_in(text) == [3]
    cleaned, dropped = drop_unknown(text, {"file:honey.txt#1"})
    assert dropped == ["file:hive.html#1"] and "hive" not in cleaned
    assert renumber(cleaned, {"file:honey.txt#1": 1}) == "Bees make honey [1]. Wax [1] and [3]."


def test_attribute_cites_only_supported_lines():
    passages = {"p#1": "Honey is stored in wax comb cells and capped with wax."}
    text = "Honey is stored in wax comb cells.\nBananas are yellow and curved fruit.\nshort"
    lines = attribute(text, passages).splitlines()
    assert lines == ["Honey is stored in wax comb cells. [p#1]", text.splitlines()[1], "short"]


def test_make_plan_dedupes_bounds_and_fills():
    drafts = [SubQuestionDraft(question=q, rationale="r") for q in ["A?", "a", "B", "C", "D"]]
    plan = make_plan("Main question?", drafts, max_items=3)
    assert [p["question"] for p in plan] == ["A?", "B", "C"]
    assert len({p["id"] for p in plan}) == 3
    one = make_plan("Main question?", drafts[:1], max_items=4)
    assert [p["question"] for p in one] == ["A?", "Main question?"]
    assert [p["question"] for p in make_plan("Q", [], max_items=1)] == ["Q"]
    assert plan_from_texts(["x", "x", " y "])[1]["question"] == "y"


def test_task_ids_are_stable_by_text():
    assert (
        plan_from_texts(["Where is honey?"])[0]["id"]
        == plan_from_texts(["where  is HONEY?"])[0]["id"]
    )


@pytest.mark.parametrize(
    "answer, kind",
    [
        ({"action": "approve"}, Approve),
        ({"action": "cancel"}, Cancel),
        ({"action": "edit", "subquestions": ["a", "b"]}, Edit),
    ],
)
def test_plan_answers_accepted(answer, kind):
    assert isinstance(PLAN_REVIEW.parse(answer), kind)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "approve",
        {},
        {"action": "ok"},
        {"action": "approve", "x": 1},
        {"action": "edit"},
        {"action": "edit", "subquestions": []},
        {"action": "edit", "subquestions": ["  "]},
        {"action": "edit", "subquestions": ["a"] * 5},
    ],
)
def test_plan_answers_refused(answer):
    with pytest.raises(InvalidInputError, match="invalid plan-review answer"):
        PLAN_REVIEW.parse(answer, {"max_researchers": 4})


def review(approved=False, gaps=(), issues=()) -> Review:
    return {
        "approved": approved,
        "model_approved": approved,
        "research_gaps": list(gaps),
        "report_issues": list(issues),
    }


def test_decide():
    state = ResearchState(question="q", max_revisions=2, revision=0)
    assert decide(state, review(approved=True)) == "approved"
    assert decide(state, review(gaps=["g"])) == ""
    assert decide(state, review()) == "stalled"
    state.review = review(gaps=["G?"])
    assert decide(state, review(gaps=["g"])) == "stalled"
    assert decide(state, review(gaps=["other"])) == ""
    state.revision = 2
    assert decide(state, review(gaps=["other"])) == "max_revisions"


def test_model_specs(monkeypatch):
    assert isinstance(chat_model("offline"), OfflineChatModel)
    assert chat_model("offline?latency=0.5").latency == 0.5  # type: ignore[attr-defined]
    for bad in ["gpt-4", "openai:", "offline?speed=1", "offline?latency=-1"]:
        with pytest.raises(ModelSpecError):
            chat_model(bad)
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        chat_model("openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert type(chat_model("openai:some-local-model")).__name__ == "ChatOpenAI"
    model = OfflineChatModel()
    register_model("mine", model)
    try:
        assert chat_model("mine") is model
    finally:
        unregister_model("mine")
    with pytest.raises(ModelSpecError):
        register_model("offline", model)


def test_default_model_follows_environment(monkeypatch):
    monkeypatch.delenv("ENSEMBLE_MODEL")
    assert settings.default_model_spec() == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert settings.default_model_spec() == settings.DEFAULT_OPENAI_MODEL
    monkeypatch.setenv("ENSEMBLE_MODEL", "offline")
    assert settings.default_model_spec() == "offline"


def test_persistence_paths(tmp_path):
    missing = tmp_path / "none" / "x.db"
    assert list_threads(missing) == [] and not missing.exists()
    with pytest.raises(DatabaseError, match="no database"):
        with open_checkpointer(missing, create=False):
            pass
    with pytest.raises(DatabaseError, match="not a file"):
        with open_checkpointer(tmp_path):
            pass
    with open_checkpointer(missing) as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is None
    assert missing.exists() and list_threads(missing) == []
