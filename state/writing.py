"""State of the writing team (outline, writer, editor loop): a subgraph with its own state.

The content pipeline sends one item at a time; the team keeps its outline, draft and editor
review to itself and hands back only the finished draft.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from typing_extensions import TypedDict

from ensemble.state.content import Item
from ensemble.state.research import Source
from ensemble.state.review import LoopOutcome


class EditorReview(TypedDict):
    """The editor's verdict plus the deterministic checks behind it."""

    approved: bool
    model_approved: bool
    requests: list[str]


@dataclass(kw_only=True)
class WritingState:
    """Everything the writing team checkpoints."""

    item: Item = field(default_factory=lambda: Item(id="", title="", question=""))
    """The item to write."""
    brief: dict[str, Any] = field(default_factory=dict)
    """audience, tone, format and target_words of this item."""
    report: str = ""
    """The research team's cited findings (numbered citations)."""
    sources: list[Source] = field(default_factory=list)
    """The research sources the draft may cite by number."""
    human_notes: list[str] = field(default_factory=list)
    """What the person asked to change."""
    previous: str = ""
    """The draft the person asked to change (empty on a first writing)."""
    mode: Literal["fresh", "human_revision"] = "fresh"
    """A fresh item goes through the editor loop; a human revision is one writing round."""
    max_revisions: int = 2
    """Editor revision rounds."""
    outline: list[str] = field(default_factory=list)
    """Section headings, in order."""
    title: str = ""
    """The item's title."""
    text: str = ""
    """The draft (markdown, numbered citations)."""
    review: EditorReview | None = None
    """The editor's latest review."""
    revision: int = 0
    """Editor revision rounds run."""
    outcome: LoopOutcome = ""
    """How the editor loop ended."""
