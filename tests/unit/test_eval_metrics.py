"""Scoring research answers: prefix matching, citations in the body, well-formed questions."""

from __future__ import annotations

import pytest

from ensemble.evaluation import Question, is_expected, is_well_formed_question, matches
from ensemble.evaluation.metrics import Score, report_body, score_answer
from ensemble.evaluation.runner import Evaluation, QuestionResult

REPORT = """# How does the with statement work?

_(offline model: extractive answer drawn from the prompt)_

The with statement wraps a block with methods of a context manager [1]. It calls
`__enter__` first [2] and `__exit__` at the end [1, 3]. A decorator helps [4].

## Sources

[1] with (pydoc topic with) `pydoc:with#1`
[2] context-managers (pydoc topic context-managers) `pydoc:context-managers#2`
[3] json.loads (json) `stdlib:json.loads#1`
[4] functools.wraps (functools) `stdlib:functools.wraps#1`

> **Note:** the reviewer was not satisfied. Open gaps: citation [9] matches no source.
"""

SOURCES = [
    {"n": 1, "passage_id": "pydoc:with#1", "title": "with", "source": "pydoc topic with"},
    {"n": 2, "passage_id": "pydoc:context-managers#2", "title": "cm", "source": "pydoc"},
    {"n": 3, "passage_id": "stdlib:json.loads#1", "title": "json.loads", "source": "json"},
    {"n": 4, "passage_id": "stdlib:functools.wraps#1", "title": "wraps", "source": "functools"},
    {"n": 5, "passage_id": "stdlib:os.walk#1", "title": "os.walk", "source": "os"},
]


@pytest.mark.parametrize(
    ("passage_id", "expected"),
    [
        ("pydoc:with#1", "pydoc:with"),
        ("pydoc:with#12", "pydoc:with#12"),
        ("stdlib:functools.wraps#1", "stdlib:functools.wraps"),
        ("stdlib:json.decoder.JSONDecoder.decode#1", "stdlib:json"),
        ("stdlib:json.decoder.JSONDecoder.decode#1", "stdlib:json.decoder"),
        ("stdlib:json#2", "stdlib:json#"),
        ("file:docs/guide/a.md#3", "file:docs"),
        ("file:docs/guide/a.md#3", "file:docs/"),
        ("file:docs/guide/a.md#3", "file:"),
    ],
)
def test_an_expected_entry_matches_its_passages_and_parts(passage_id: str, expected: str) -> None:
    assert matches(passage_id, expected)


@pytest.mark.parametrize(
    ("passage_id", "expected"),
    [
        ("pydoc:while#1", "pydoc:with"),
        ("pydoc:context-managers#1", "pydoc:context"),
        ("stdlib:ossaudiodev#1", "stdlib:os"),
        ("stdlib:functools.wrapsx#1", "stdlib:functools.wraps"),
        ("stdlib:json.loads#1", "stdlib:json#"),
        ("pydoc:with#12", "pydoc:with#1"),
        ("pydoc:with#1", "pydoc:with#12"),
        ("pydoc:with#1", ""),
        ("stdlib:copyreg#1", "stdlib:copy"),
    ],
)
def test_a_prefix_that_stops_inside_a_name_matches_nothing_else(
    passage_id: str, expected: str
) -> None:
    assert not matches(passage_id, expected)


def test_is_expected_takes_any_entry() -> None:
    assert is_expected("stdlib:json.loads#2", ["pydoc:with", "stdlib:json.loads"])
    assert not is_expected("stdlib:json.loads#2", ["pydoc:with", "stdlib:json.dumps"])
    assert not is_expected("pydoc:with#1", [])


def test_the_body_leaves_out_the_title_the_source_list_and_the_outcome_note() -> None:
    body = report_body(REPORT)
    assert body.startswith("_(offline model")
    assert body.endswith("A decorator helps [4].")
    assert "[9]" not in body and "## Sources" not in body


def test_score_counts_body_citations_against_the_source_list() -> None:
    score = score_answer(
        {"report": REPORT, "sources": SOURCES, "plan": []},
        ["pydoc:with", "pydoc:context-managers", "stdlib:contextlib.contextmanager"],
    )
    assert score.cited == (
        "pydoc:with#1",
        "pydoc:context-managers#2",
        "stdlib:json.loads#1",
        "stdlib:functools.wraps#1",
    )  # os.walk is listed but never cited in the body
    assert score.expected_cited == ("pydoc:with#1", "pydoc:context-managers#2")
    assert score.hit and score.precision == 0.5
    assert (score.markers, score.valid_markers, score.citation_validity) == (5, 5, 1.0)


def test_markers_that_point_at_nothing_are_invalid() -> None:
    report = (
        "# Q\n\nFirst [1]. Second [7]. Raw id [pydoc:with#1]. Unknown id [stdlib:nope#3].\n\n"
        "## Sources\n\n[1] with `pydoc:with#1`\n"
    )
    sources = [{"n": 1, "passage_id": "pydoc:with#1", "title": "with", "source": "pydoc"}]
    score = score_answer({"report": report, "sources": sources}, ["stdlib:json"])
    assert (score.markers, score.valid_markers) == (4, 2)
    assert score.unknown == ("[7]", "[stdlib:nope#3]")
    assert score.cited == ("pydoc:with#1",)
    assert not score.hit and score.precision == 0.0 and score.citation_validity == 0.5


def test_a_listed_source_that_was_never_retrieved_is_not_a_valid_citation() -> None:
    score = score_answer(
        {"report": REPORT, "sources": SOURCES}, ["pydoc:with"], retrieved={"pydoc:with#1"}
    )
    assert score.cited == ("pydoc:with#1",)
    assert (score.markers, score.valid_markers) == (5, 2)


def test_an_answer_without_citations_has_no_precision_or_validity() -> None:
    score = score_answer({"report": "# Q\n\nNo idea.\n\n## Sources\n\nNone.", "sources": []}, ["x"])
    assert not score.hit
    assert score.precision is None and score.citation_validity is None
    assert score.well_formed_share is None


def test_the_plan_is_scored_for_well_formed_subquestions() -> None:
    plan = [
        {"id": "a", "question": "decorators work", "rationale": ""},
        {"id": "b", "question": "How do decorators wrap a function?", "rationale": ""},
    ]
    score = score_answer({"report": "", "plan": plan}, ["x"])
    assert score.subquestions == ("decorators work", "How do decorators wrap a function?")
    assert score.well_formed == 1 and score.well_formed_share == 0.5


def test_the_question_as_asked_counts_as_well_formed_in_a_plan() -> None:
    asked = "How can I find out which parameters a function takes and what their defaults are?"
    plan = [{"id": "a", "question": asked, "rationale": ""}]
    assert score_answer({"report": "", "plan": plan}, ["x"]).well_formed == 0  # ends on "are"
    assert score_answer({"report": "", "plan": plan}, ["x"], asked=f" {asked} ").well_formed == 1


@pytest.mark.parametrize(
    "text",
    [
        "How do decorators work in Python?",
        "What does json.loads() return for a JSON array?",
        "Why does the with statement call __exit__ on errors?",
        "Is a tuple hashable when it holds lists?",
        "Does sorted() keep equal items in their original order?",
        "Can a generator return a value with return?",
        "Should I use pathlib instead of os.path for new code?",
        "Which methods does a context manager need?",
        "How do decorators work?",  # four words is enough
        "  When is a finally clause executed after a return?  ",
        'What does the "b" prefix of a string literal mean?',
    ],
)
def test_well_formed_questions(text: str) -> None:
    assert is_well_formed_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "decorators work",  # keywords
        "Python",
        "How do decorators work in Python",  # no question mark
        "how do decorators work in Python?",  # not capitalised
        "HOW do decorators work in Python?",
        "Explain how decorators work in Python?",  # not a question word
        "Decorators: how do they work?",
        "Why use decorators?",  # three words
        "What is it?",
        "How does X compare to?",  # dangling word
        "What is the difference between copy and?",
        "How do decorators work...?",  # fragment markers
        "How do decorators work …?",
        "How do decorators work ?",
        "How do decorators work??",
        "How do decorators work?!",
        "What is X? How is Y used?",  # two questions
        "How do decorators work? Explain",
        "- How do decorators work in Python?",  # a list item
        "1. How do decorators work in Python?",
        "How do decorators (and wrappers work in Python?",  # unbalanced
        'What does "with do in Python?',
        "How does {topic} work in Python?",  # a template
        "How does <topic> work in Python?",
        "What is json | pickle in Python?",
        "How do decorators\nwork in Python?",
        "TODO How do decorators work?",
        "What " + "very " * 40 + "long question is this?",
        "",
        "?",
    ],
)
def test_not_well_formed_questions(text: str) -> None:
    assert not is_well_formed_question(text)


def test_a_non_string_is_not_a_question() -> None:
    assert not is_well_formed_question(None)  # type: ignore[arg-type]


def _result(qid: str, score: Score, status: str = "done") -> QuestionResult:
    question = Question(id=qid, question=f"What is {qid} about here?", expect=("pydoc:with",))
    return QuestionResult(
        question=question,
        score=score,
        thread_id=f"t-{qid}",
        status=status,
        outcome="approved" if status == "done" else "",
        calls=3,
        tokens_in=100,
        tokens_out=20,
        seconds=0.5,
    )


def test_totals_are_micro_averages_and_undefined_rates_are_none() -> None:
    a = Score(
        cited=("p#1", "p#2", "p#3", "p#4"),
        expected_cited=("p#1",),
        markers=4,
        valid_markers=4,
        subquestions=("x", "How does this thing work?"),
        well_formed=1,
    )
    b = Score(cited=("p#1",), expected_cited=("p#1",), markers=2, valid_markers=1)
    c = Score(cited=(), expected_cited=(), markers=0, valid_markers=0)
    results = (_result("a", a), _result("b", b), _result("c", c, "failed"))
    summary = Evaluation(results, "m").summary()
    assert summary["questions"] == 3 and summary["hits"] == 2
    assert summary["hit_rate"] == round(2 / 3, 4)
    assert summary["precision"] == round(2 / 5, 4)  # micro: 2 expected of 5 cited
    assert summary["precision_mean"] == round((0.25 + 1.0) / 2, 4)  # c cites nothing
    assert summary["citation_validity"] == round(5 / 6, 4)
    assert summary["well_formed"] == 0.5
    assert (summary["calls"], summary["tokens"], summary["seconds"]) == (9, 360, 1.5)
    assert summary["failed"] == 1
    assert [q["id"] for q in summary["per_question"]] == ["a", "b", "c"]
    assert summary["per_question"][2]["precision"] is None

    empty = Evaluation((_result("c", c),), "m").summary()
    assert empty["precision"] is None and empty["citation_validity"] is None
    assert empty["well_formed"] is None and empty["hit_rate"] == 0.0
