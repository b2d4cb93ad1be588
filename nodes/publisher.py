"""Publisher: the one node that writes files, only for an approved draft, exactly once.

It checks that the approval is for this exact text, resolves the output folder against the
operator's choices, and publishes through the journal keyed by thread and approval: a crash
then resume completes the same files, a replay publishes nothing new, and a forked run that is
approved again publishes under a new name.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ensemble.audit.trail import thread_context
from ensemble.db import DatabaseLike
from ensemble.progress import emit
from ensemble.publishing import Piece, PublishError, PublishJournal, PublishResult, publish
from ensemble.publishing.approvals import verify
from ensemble.state.content import ContentState, Publication, draft_key
from ensemble.workspace import Workspace


def _publish(
    piece: Piece, folder: Path, db: DatabaseLike, published_at: str, key: str
) -> PublishResult:
    """Publish from a worker thread, journal included.

    The journal's SQLite work must not block the event loop, where the checkpointer's own
    transaction on the same file waits to commit.
    """
    return publish(piece, folder, PublishJournal(db), published_at=published_at, key=key)


async def publisher(state: ContentState, *, workspace: Workspace) -> dict:
    """Publish the approved piece into the chosen folder; refuse anything not approved."""
    approval = state.approval
    if approval is None or approval["draft_key"] != draft_key(state.title, state.piece):
        raise PublishError("publishing refused: no approval for this exact draft")
    thread = thread_context()[0]
    genuine = await asyncio.to_thread(
        verify,
        workspace.db,
        thread,
        approval["approval_id"],
        approval["draft_key"],
        approval.get("signature", ""),
    )
    if not genuine:
        raise PublishError(
            "publishing refused: the approval was not given through the approval step"
        )
    folder = await asyncio.to_thread(workspace.output_dir, state.output_dir, create=True)
    piece = Piece(
        title=state.title,
        body=state.piece,
        topic=state.topic,
        audience=state.audience,
        format=state.format,
        tone=state.tone,
        sources=tuple((s["title"], s["source"]) for s in state.sources),
        thread_id=thread,
        approved_by=approval["decision"],
    )
    emit("publisher", "started", folder=str(folder))
    result = await asyncio.to_thread(
        _publish, piece, folder, workspace.db, approval["approved_at"], approval["approval_id"]
    )
    published: Publication = {
        "files": [str(p) for p in result.files],
        "slug": result.slug,
        "already_published": result.already_published,
    }
    emit("publisher", "finished", files=published["files"], again=result.already_published)
    return {"published": published, "outcome": "published"}
