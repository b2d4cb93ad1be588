"""Evaluating the research assistant on question sets with known sources (`ensemble eval`).

`questions` reads a set, `metrics` scores one answer (hit, precision, citation validity,
well-formed sub-questions), `runner` runs a set through the real graph and adds up the
model calls, tokens and time each question spent.
"""

from ensemble.evaluation.metrics import (
    Score,
    is_expected,
    is_well_formed_question,
    matches,
    score_answer,
)
from ensemble.evaluation.questions import (
    Question,
    QuestionFileError,
    QuestionSet,
    load_questions,
    shipped_path,
)

__all__ = [
    "Question",
    "QuestionFileError",
    "QuestionSet",
    "Score",
    "is_expected",
    "is_well_formed_question",
    "load_questions",
    "matches",
    "score_answer",
    "shipped_path",
]
