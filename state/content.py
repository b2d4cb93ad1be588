"""State of the content pipeline: a brief in, an approved and published piece out.

The editor-in-chief splits the brief into items (one for a blog post or a brief, several for a
newsletter); each item is researched by the research team (the research graph as a subgraph)
and written by the writing team (outline, writer, editor loop: a subgraph with its own state),
in parallel. Drafts are keyed by item id so parallel teams and re-runs never duplicate them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypedDict

from ensemble.db.state_versions import StateVersion
from ensemble.state.reducers import merge_dicts
from ensemble.state.research import Folder, Source

Format = Literal["blog", "brief", "newsletter"]
Outcome = Literal["", "published", "rejected"]
MAX_ITEMS = 8


class ContentInput(BaseModel):
    """What a user gives a content run; the same from the CLI, a notebook or the server."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="What the piece is about.", max_length=500)
    audience: str = Field("curious readers", max_length=200, description="Who it is written for.")
    format: Format = Field("blog", description="The kind of piece.")
    target_words: int = Field(400, ge=50, le=3000, description="Target length of the piece, words.")
    tone: str = Field("clear and friendly", max_length=100, description="How it should sound.")
    items: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Newsletter items, each researched and written in parallel "
        "(planned from the topic when empty).",
    )
    max_revisions: int = Field(2, ge=0, le=5, description="Editor revision rounds per item.")
    corpus: Folder = Field(None, description="Folder of .md/.txt/.rst/.html files to research.")
    output_dir: Folder = Field(
        None, description="Folder to publish into (default: published/ beside the database)."
    )

    @field_validator("topic", "audience", "tone")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("items")
    @classmethod
    def _clean_items(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(v.split()) for v in value]
        if not all(cleaned):
            raise ValueError("items must not be blank")
        return cleaned

    @model_validator(mode="after")
    def _items_need_a_newsletter(self) -> ContentInput:
        if self.items and self.format != "newsletter":
            raise ValueError("items are for the newsletter format")
        return self


class Item(TypedDict):
    """One part of the piece: the whole piece for a blog or brief, one story of a newsletter."""

    id: str
    title: str
    question: str


class Digest(TypedDict):
    """What the research team found for one item: a cited report and its sources."""

    item_id: str
    report: str
    sources: list[Source]
    outcome: str
    error: str | None
    attempts: int


class Draft(TypedDict):
    """The writing team's text for one item, with the editor's last notes."""

    item_id: str
    title: str
    text: str
    editor_notes: list[str]
    editor_outcome: str
    revisions: int
    round: int


class Approval(TypedDict):
    """A person's approval of one exact text: the publisher publishes only that text."""

    approval_id: str
    decision: Literal["approve", "edit"]
    draft_key: str
    approved_at: str
    signature: str


class Publication(TypedDict):
    """What the publisher wrote."""

    files: list[str]
    slug: str
    already_published: bool


class ItemTask(TypedDict):
    """What one research-team or writing-team run is sent."""

    item: Item
    corpus: str | None
    brief: dict[str, Any]
    digest: Digest | None
    previous: Draft | None
    human_notes: list[str]
    round: int


def draft_key(title: str, text: str) -> str:
    """The identity of an exact draft (title and body)."""
    return hashlib.sha256(f"{title}\n\n{text}".encode()).hexdigest()


STATE_VERSION = StateVersion(current=1, migrations={})
"""The version of `ContentState` that checkpoints record.

Raise `current` and add `migrations[old]` (a function from the old values to the new, here next to
the state) whenever a change would misread an older checkpoint: a key renamed or removed, a value's
shape changed. A new key with a default needs none. `tests/fixtures/release-*.db` holds threads
written by a release; `tests/integration/test_release_database.py` reads them after every change.
"""


@dataclass(kw_only=True)
class ContentState:
    """Everything the content graph checkpoints."""

    topic: str = ""
    """What the piece is about."""
    audience: str = "curious readers"
    """Who it is written for."""
    format: Format = "blog"
    """blog, brief or newsletter."""
    target_words: int = 400
    """Target length of the whole piece in words."""
    tone: str = "clear and friendly"
    """How it should sound."""
    items: list[str] = field(default_factory=list)
    """Newsletter items as the user gave them."""
    max_revisions: int = 2
    """Editor revision rounds per item."""
    corpus: str | None = None
    """Folder corpus to research; None means Python's own documentation."""
    output_dir: str | None = None
    """Folder to publish into; None means the default beside the database."""
    brief: list[Item] = field(default_factory=list)
    """The items the editor-in-chief planned."""
    research: Annotated[dict[str, Digest], merge_dicts] = field(default_factory=dict)
    """Research digests by item id."""
    drafts: Annotated[dict[str, Draft], merge_dicts] = field(default_factory=dict)
    """Drafts by item id (the latest writing round of each)."""
    writing_round: int = 0
    """Rounds of human change requests so far; a draft of an older round is rewritten."""
    human_notes: list[str] = field(default_factory=list)
    """What the person asked to change, in order (visible to the writers)."""
    title: str = ""
    """The piece's title."""
    piece: str = ""
    """The assembled markdown body, with numbered citations."""
    sources: list[Source] = field(default_factory=list)
    """The piece's numbered sources."""
    word_count: int = 0
    """Words in the piece."""
    approval_feedback: str = ""
    """Why the last approval answer was refused (shown at the next prompt)."""
    approval: Approval | None = None
    """The approval of the exact text to publish."""
    published: Publication | None = None
    """What the publisher wrote."""
    outcome: Outcome = ""
    """How the run ended: published or rejected; empty while it runs."""


class ContentOutput(TypedDict):
    """What a finished content run returns."""

    topic: str
    format: Format
    title: str
    piece: str
    sources: list[Source]
    word_count: int
    outcome: Outcome
    published: Publication | None
