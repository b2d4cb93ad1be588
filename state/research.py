"""State of the research scenario: a narrow validated input, a fuller internal state, an output.

Big texts stay small in checkpoints: passages live in the corpus index and the state holds only
their ids with a short excerpt; each researcher's tool-call messages stay inside the researcher.
Notes are keyed by task id so parallel researchers and re-runs never duplicate them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from ensemble.db.state_versions import StateVersion
from ensemble.state.reducers import merge_dicts

MAX_QUESTION_CHARS = 4000
MAX_RESEARCHERS = 16
"""The most researchers one research run may fan out to (sub-questions of a plan)."""

Outcome = Literal["", "approved", "max_revisions", "stalled", "cancelled"]

Folder = Annotated[str | None, AfterValidator(lambda value: (value or "").strip() or None)]
"""A folder given as input; a blank one means the default."""


class ResearchInput(BaseModel):
    """What a user gives a research run; the same from the CLI, a notebook or the server."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="The research question.", max_length=MAX_QUESTION_CHARS)
    max_researchers: int = Field(
        4, ge=1, le=MAX_RESEARCHERS, description="At most this many sub-questions."
    )
    max_revisions: int = Field(2, ge=0, le=5, description="At most this many gap-research rounds.")
    review_plan: bool = Field(False, description="Pause for a human to approve the plan.")
    corpus: Folder = Field(None, description="Folder of .md/.txt/.rst/.html files to search.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class SubQuestion(TypedDict):
    """One line of the plan, researched by one researcher."""

    id: str
    question: str
    rationale: str


class ResearchTask(TypedDict):
    """What one researcher is sent: a sub-question or a reviewer's gap."""

    task_id: str
    subquestion: str
    corpus: str | None
    round: int


class Note(TypedDict):
    """A researcher's findings: text whose claims cite passage ids as `[id]`."""

    task_id: str
    subquestion: str
    summary: str
    cited: list[str]
    round: int
    fallback: bool
    error: str | None


class PassageRef(TypedDict):
    """A reference to a corpus passage (its text stays in the corpus index)."""

    id: str
    title: str
    source: str
    excerpt: str


class Source(TypedDict):
    """One numbered entry of the report's source list."""

    n: int
    passage_id: str
    title: str
    source: str


class Review(TypedDict):
    """The reviewer's verdict plus the deterministic checks behind it."""

    approved: bool
    model_approved: bool
    research_gaps: list[str]
    report_issues: list[str]


STATE_VERSION = StateVersion(current=1, migrations={})
"""The version of `ResearchState` that checkpoints record.

Raise `current` and add `migrations[old]` (a function from the old values to the new, here next to
the state) whenever a change would misread an older checkpoint: a key renamed or removed, a value's
shape changed. A new key with a default needs none. `tests/fixtures/release-*.db` holds threads
written by a release; `tests/integration/test_release_database.py` reads them after every change.
"""


@dataclass(kw_only=True)
class ResearchState:
    """Everything the research graph checkpoints."""

    question: str = ""
    """The user's research question."""
    max_researchers: int = 4
    """Upper bound on sub-questions (and on gap researchers per round)."""
    max_revisions: int = 2
    """Upper bound on gap-research rounds after the first review."""
    review_plan: bool = False
    """Whether a human approves the plan before research starts."""
    corpus: str | None = None
    """Folder corpus to search; None means Python's own documentation."""
    plan: list[SubQuestion] = field(default_factory=list)
    """The sub-questions being researched."""
    plan_feedback: str = ""
    """Why the last plan-review answer was refused (shown at the next prompt)."""
    notes: Annotated[dict[str, Note], merge_dicts] = field(default_factory=dict)
    """Findings by task id, written once by each researcher."""
    passages: Annotated[dict[str, PassageRef], merge_dicts] = field(default_factory=dict)
    """Every passage any researcher retrieved, by passage id."""
    report: str = ""
    """The markdown report with numbered citations and a source list."""
    sources: list[Source] = field(default_factory=list)
    """The report's numbered sources."""
    revision: int = 0
    """Gap-research rounds started so far."""
    review: Review | None = None
    """The latest review."""
    outcome: Outcome = ""
    """How the run ended; empty while it runs."""


class ResearchOutput(TypedDict):
    """What a finished research run returns."""

    question: str
    plan: list[SubQuestion]
    report: str
    sources: list[Source]
    outcome: Outcome
    revision: int
