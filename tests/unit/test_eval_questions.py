"""Question sets: loading YAML and JSONL, one clear error per bad file, and the shipped set."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import pytest

from ensemble.corpus import CorpusIndex
from ensemble.evaluation import QuestionFileError, load_questions, matches, shipped_path

ROOT = Path(__file__).resolve().parents[2]

GOOD_YAML = """\
- id: with
  question: How does the with statement work?
  expect: [pydoc:with, pydoc:context-managers]
- id: json
  question: "  How does json decode documents?  "
  expect:
    - stdlib:json.loads
  corpus: docs
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_yaml_list_loads_in_order(tmp_path: Path) -> None:
    loaded = load_questions(write(tmp_path, "set.yaml", GOOD_YAML))
    assert [q.id for q in loaded.questions] == ["with", "json"]
    first, second = loaded.questions
    assert first.expect == ("pydoc:with", "pydoc:context-managers") and first.corpus is None
    assert second.question == "How does json decode documents?"
    assert second.corpus == str(tmp_path / "docs")  # relative to the file's folder


def test_a_yaml_mapping_with_a_description_loads(tmp_path: Path) -> None:
    text = "description: Small set.\nquestions:\n" + "".join(
        f"  {line}\n" for line in GOOD_YAML.splitlines()
    )
    loaded = load_questions(write(tmp_path, "set.yml", text))
    assert loaded.description == "Small set." and len(loaded.questions) == 2


def test_jsonl_loads_and_skips_blank_lines(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "question": "What does pass do?", "expect": ["pydoc:pass"]},
        {"id": "b", "question": "What does del do?", "expect": ["pydoc:del"], "corpus": "/x"},
    ]
    text = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    loaded = load_questions(write(tmp_path, "set.jsonl", text))
    assert [q.id for q in loaded.questions] == ["a", "b"]
    assert loaded.questions[1].corpus == "/x"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "set.yaml",
            "- id: a\n  question: What is a?\n  expect: [pydoc:a]\n- id: b\n  question: Why?\n",
            "set.yaml:4: question 'b': missing field 'expect'",
        ),
        (
            "set.yaml",
            "- id: a\n  question: What is a?\n  expect: []\n",
            "set.yaml:1: question 'a': expect: must not be empty",
        ),
        (
            "set.yaml",
            "- id: a\n  question: '   '\n  expect: [pydoc:a]\n",
            "set.yaml:1: question 'a': question: must not be empty",
        ),
        (
            "set.yaml",
            "- id: a\n  question: Q1?\n  expect: [x]\n- id: a\n  question: Q2?\n  expect: [y]\n",
            "set.yaml:4: question 'a': duplicate id (first at ",
        ),
        (
            "set.yaml",
            "- id: a\n  question: Q?\n  expect: [x]\n  expected: [y]\n",
            "set.yaml:1: question 'a': unknown field 'expected'",
        ),
        (
            "set.yaml",
            "- id: a\n  question: Q?\n  expect: pydoc:with\n",
            "set.yaml:1: question 'a': expect: must be a list",
        ),
        (
            "set.yaml",
            "- id: a\n  question: Q?\n  expect: ['pydoc with']\n",
            "set.yaml:1: question 'a': expect.0: 'pydoc with' is not a source id",
        ),
        (
            "set.yaml",
            "- question: Q?\n  expect: [x]\n",
            "set.yaml:1: question #1: missing field 'id'",
        ),
        (
            "set.yaml",
            "- id: has space\n  question: Q?\n  expect: [x]\n",
            "set.yaml:1: question 'has space': id: 'has space' must be 1-80 characters",
        ),
        ("set.yaml", "- just a string\n", "set.yaml:1: question #1: expected a mapping"),
        ("set.yaml", "- id: a\n  question: [unclosed\n", "set.yaml:3: bad YAML"),
        ("set.yaml", "", "set.yaml: no questions"),
        ("set.yaml", "questions: []\n", "set.yaml: no questions"),
        ("set.yaml", "items: []\n", "set.yaml:1: unknown key 'items'"),
        ("set.yaml", "questions: nope\n", "set.yaml:1: expected a list of questions"),
        (
            "set.jsonl",
            '{"id": "a", "question": "Q?", "expect": ["x"]}\n{"id": "b", "question": \n',
            "set.jsonl:2: bad JSON",
        ),
        (
            "set.jsonl",
            '\n{"id": "a", "question": "Q?", "expect": ["x"]}\n\n{"id": "a", "question": "R?", '
            '"expect": ["y"]}\n',
            "set.jsonl:4: question 'a': duplicate id (first at ",
        ),
        ("set.json", "[]", "set.json: a question file is .yaml, .yml or .jsonl"),
    ],
)
def test_a_bad_file_gives_one_line_naming_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(QuestionFileError) as caught:
        load_questions(path)
    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith(str(tmp_path / message.split(":")[0].split(" ")[0]))
    assert message in error


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(QuestionFileError, match="cannot read"):
        load_questions(tmp_path / "missing.yaml")


SETS = sorted(shipped_path().parent.glob("*.yaml"))
"""The shipped set, the held-out set and the blind set: the last two check the tuning."""


@pytest.mark.parametrize("path", SETS, ids=[p.stem for p in SETS])
def test_each_shipped_set_is_large_and_well_formed(path: Path) -> None:
    loaded = load_questions(path)
    assert len(loaded.questions) >= 30
    assert all(q.corpus is None for q in loaded.questions)  # all for the default corpus
    assert all(1 <= len(q.expect) <= 6 for q in loaded.questions)
    assert len({q.question for q in loaded.questions}) == len(loaded.questions)


def test_the_sets_ask_different_questions() -> None:
    questions = [q.question for path in SETS for q in load_questions(path).questions]
    assert len(SETS) == 3 and len(set(questions)) == len(questions)


def test_every_expected_entry_of_the_shipped_sets_matches_a_default_corpus_passage(
    default_corpus_db: Path,
) -> None:
    key = CorpusIndex(default_corpus_db).key
    with sqlite3.connect(default_corpus_db) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT passage_id FROM corpus_passages WHERE corpus_key = ?", (key,)
            )
        ]
    assert ids
    missing = [
        f"{path.stem} {q.id}: {entry}"
        for path in SETS
        for q in load_questions(path).questions
        for entry in q.expect
        if not any(matches(pid, entry) for pid in ids)
    ]
    assert missing == []


def test_the_shipped_sets_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = config["tool"]["setuptools"]["package-data"]
    assert "questions/*.yaml" in data["ensemble.evaluation"]
    assert shipped_path().is_file()
