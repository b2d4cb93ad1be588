"""Question sets: the file format and its loading, with errors that name the file and line.

A question set is YAML (`.yaml`/`.yml`: a list of entries, or a mapping with `questions:` and
an optional `description:`) or JSONL (`.jsonl`: one JSON object per line, blank lines
skipped). Each entry is `{id, question, expect: [source ids or id prefixes], corpus?}`. A bad
file fails whole, before anything runs, with one line such as
`set.yaml:12: question 'with': expect: must list at least one source id`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ensemble.errors import InvalidInputError, describe_parse_error, describe_validation_error

MAX_QUESTION_CHARS = 4000
"""The research scenario's own limit on a question."""

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl"}

SHIPPED = "python_docs.yaml"
"""The shipped set for the default corpus (Python's documentation)."""

SourceRef = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\S+$")]


class QuestionFileError(InvalidInputError):
    """A question file cannot be used; the message names the file and, when known, the line."""


PATTERNS = {
    "id": "must be 1-80 characters of letters, digits and _.:- (starting with a letter or digit)",
    "expect": "is not a source id (no spaces, not empty)",
}
"""What the patterns of a question's fields accept, in words."""


class Question(BaseModel):
    """One question of a set and the sources a correct answer cites."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$", description="Unique name.")
    question: Annotated[str, StringConstraints(strip_whitespace=True)] = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS
    )
    expect: tuple[SourceRef, ...] = Field(
        min_length=1, description="Passage ids or id prefixes, e.g. `pydoc:with`."
    )
    corpus: str | None = Field(None, description="A folder corpus; None: the run's corpus.")


@dataclass(frozen=True)
class QuestionSet:
    """The questions of one file, in file order."""

    source: str
    """The file, as named in messages."""
    questions: tuple[Question, ...]
    description: str = ""


def shipped_path(name: str = SHIPPED) -> Path:
    """The path of a question set that ships with Ensemble."""
    return Path(str(resources.files("ensemble.evaluation").joinpath("questions", name)))


def load_questions(path: str | Path) -> QuestionSet:
    """Read and check a question set; a relative `corpus` is taken from the file's folder.

    Raises:
        QuestionFileError: The file is missing or unreadable, of an unknown type, not valid
            YAML/JSON, empty, or has a bad entry (a missing field, an empty question or
            expect list, an unknown field, a duplicate id).
    """
    path = Path(path).expanduser()
    label = str(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise QuestionFileError(f"{label}: a question file is .yaml, .yml or .jsonl")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise QuestionFileError(f"{label}: not a UTF-8 text file") from None
    except OSError as error:
        raise QuestionFileError(f"{label}: cannot read ({error.strerror})") from None
    entries, description = _jsonl(text, label) if kind == "jsonl" else _yaml(text, label)
    if not entries:
        raise QuestionFileError(f"{label}: no questions")
    questions: list[Question] = []
    first_seen: dict[str, str] = {}
    for line, index, item in entries:
        where = f"{label}:{line}"
        question = _validate(item, f"{where}: question {_name_of(item, index)}")
        if question.id in first_seen:
            raise QuestionFileError(
                f"{where}: question {question.id!r}: duplicate id "
                f"(first at {first_seen[question.id]})"
            )
        first_seen[question.id] = where
        if question.corpus and not Path(question.corpus).expanduser().is_absolute():
            folder = path.parent / Path(question.corpus)
            question = question.model_copy(update={"corpus": str(folder)})
        questions.append(question)
    return QuestionSet(label, tuple(questions), description)


Entry = tuple[int, int, Any]
"""(line, index, raw value) of one entry."""


def _jsonl(text: str, label: str) -> tuple[list[Entry], str]:
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise QuestionFileError(f"{label}:{number}: bad JSON: {error.msg}") from None
        entries.append((number, len(entries), value))
    return entries, ""


def _yaml(text: str, label: str) -> tuple[list[Entry], str]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return [], ""
        data = loader.construct_document(root)
    except yaml.YAMLError as error:
        raise QuestionFileError(describe_parse_error(error, label)) from None
    finally:
        loader.dispose()
    description = ""
    items_node: yaml.Node | None = root
    if isinstance(data, dict):
        extra = sorted(str(k) for k in data if k not in ("questions", "description"))
        if extra or "questions" not in data:
            problem = f"unknown key {extra[0]!r}" if extra else "no 'questions' key"
            raise QuestionFileError(
                f"{label}:{_line(root)}: {problem} (a question file is a list of questions, "
                "or a mapping with 'questions' and an optional 'description')"
            )
        description = str(data.get("description") or "")
        data = data["questions"]
        items_node = next((v for k, v in root.value if k.value == "questions"), None)
    if not isinstance(data, list):
        raise QuestionFileError(
            f"{label}:{_line(items_node)}: expected a list of questions, got {type(data).__name__}"
        )
    nodes = items_node.value if isinstance(items_node, yaml.SequenceNode) else []
    lines = [_line(node) for node in nodes]
    entries = [(lines[i] if i < len(lines) else 1, i, item) for i, item in enumerate(data)]
    return entries, description


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _name_of(item: Any, index: int) -> str:
    name = item.get("id") if isinstance(item, Mapping) else None
    return repr(name) if isinstance(name, str) and name.strip() else f"#{index + 1}"


def _validate(item: Any, prefix: str) -> Question:
    if not isinstance(item, Mapping):
        kind = "a list" if isinstance(item, list) else type(item).__name__
        raise QuestionFileError(f"{prefix}: expected a mapping of fields, got {kind}")
    try:
        return Question.model_validate(dict(item))
    except ValidationError as error:
        problem = describe_validation_error(error, known=Question.model_fields, patterns=PATTERNS)
        raise QuestionFileError(f"{prefix}: {problem}") from None
