"""Human approval: the draft, the editor's notes, the sources and the word count, then a decision.

`approve` publishes this exact text; `request_changes` sends the notes back to the writers for
exactly one more writing round; `edit` publishes the person's text (sanitised as every piece);
`reject` publishes nothing. Anything else is refused and the run stays paused.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ensemble.audit.trail import thread_context
from ensemble.db import DatabaseLike
from ensemble.nodes.gates import Answer, Gate
from ensemble.publishing.approvals import sign
from ensemble.publishing.piece import count_words
from ensemble.state.content import Approval, ContentState, draft_key
from ensemble.workspace import Workspace


class Approve(Answer):
    """Publish the draft as it is."""

    action: Literal["approve"]


class RequestChanges(Answer):
    """One more writing round with these notes."""

    action: Literal["request_changes"]
    notes: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class Edit(Answer):
    """Publish this text instead (and this title, if given)."""

    action: Literal["edit"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100_000)]
    title: str | None = Field(None, min_length=1, max_length=200)


class Reject(Answer):
    """Publish nothing; the run ends."""

    action: Literal["reject"]
    reason: str = Field("", max_length=2000)


APPROVAL: Gate[Approve | RequestChanges | Edit | Reject] = Gate(
    node="approval",
    kind="content_approval",
    what="approval answer",
    answers=Annotated[Approve | RequestChanges | Edit | Reject, Field(discriminator="action")],
    feedback="approval_feedback",
)


def approval_request(state: ContentState) -> dict[str, Any]:
    """The interrupt payload: everything a person (or a client UI) needs to decide."""
    return {
        "title": state.title,
        "draft": state.piece,
        "word_count": state.word_count,
        "target_words": state.target_words,
        "editor_notes": {
            d["title"]: {"outcome": d["editor_outcome"], "requests": d["editor_notes"]}
            for d in state.drafts.values()
        },
        "sources": [f"[{s['n']}] {s['title']} ({s['source']})" for s in state.sources],
    }


async def _approval(
    decision: Literal["approve", "edit"], title: str, text: str, db: DatabaseLike
) -> Approval:
    """An approval of this exact text, signed so that only this node can have made it."""
    approval_id, key = str(uuid.uuid4()), draft_key(title, text)
    thread = thread_context()[0]
    signature = await asyncio.to_thread(sign, db, thread, approval_id, key)
    return {
        "approval_id": approval_id,
        "decision": decision,
        "draft_key": key,
        "approved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signature": signature,
    }


async def approval(state: ContentState, *, workspace: Workspace) -> dict:
    """Pause for the decision; a refused answer loops back here and pauses again.

    Nothing in the draft or its sources can answer for the person: only the resume value decides.
    """
    shown = {"title": state.title, "words": state.word_count}
    parsed, update = APPROVAL.ask(state, approval_request(state), workspace, shown=shown)
    if parsed is None:
        return update
    if isinstance(parsed, Reject):
        return update | {"approval": None, "outcome": "rejected"}
    if isinstance(parsed, RequestChanges):
        return update | {
            "approval": None,
            "human_notes": [*state.human_notes, " ".join(parsed.notes.split())],
            "writing_round": state.writing_round + 1,
        }
    if isinstance(parsed, Edit):
        title = " ".join(parsed.title.split()) if parsed.title else state.title
        text = parsed.text.strip() + "\n"
        return update | {
            "title": title,
            "piece": text,
            "word_count": count_words(text),
            "approval": await _approval("edit", title, text, workspace.db),
        }
    approved = await _approval("approve", state.title, state.piece, workspace.db)
    return update | {"approval": approved}
