"""The editor-in-chief assembles the items' drafts into one piece with one source list."""

from __future__ import annotations

import re

from ensemble.nodes.citations import NUMBERED_CITATION
from ensemble.progress import emit
from ensemble.publishing.piece import count_words
from ensemble.state.content import ContentState, Draft
from ensemble.state.research import Source

_HEADING = re.compile(r"^(#{2,5}) ", re.M)


def renumber_item(text: str, local: list[Source], sources: list[Source]) -> str:
    """Give an item's `[n]` citations the piece's numbers, adding its sources to `sources`."""
    mapping: dict[int, int] = {}
    for source in local:
        known = next((s["n"] for s in sources if s["passage_id"] == source["passage_id"]), None)
        if known is None:
            known = len(sources) + 1
            sources.append({**source, "n": known})
        mapping[source["n"]] = known
    return NUMBERED_CITATION.sub(
        lambda m: f"[{mapping[int(m.group(1))]}]" if int(m.group(1)) in mapping else "", text
    )


def assemble_piece(state: ContentState) -> tuple[str, str, list[Source]]:
    """(title, body, sources): one item as it is; a newsletter as a section per item."""
    sources: list[Source] = []
    drafts: list[Draft] = [state.drafts[i["id"]] for i in state.brief if i["id"] in state.drafts]
    parts = []
    for draft in drafts:
        local = state.research.get(draft["item_id"], {}).get("sources", [])  # type: ignore[call-overload]
        text = renumber_item(draft["text"], list(local), sources)
        if state.format == "newsletter":
            text = f"## {draft['title']}\n\n" + _HEADING.sub(lambda m: "#" + m.group(1) + " ", text)
        parts.append(text.strip())
    if state.format == "newsletter" or not drafts:
        title = state.topic[:1].upper() + state.topic[1:]
    else:
        title = drafts[0]["title"]
    return title, "\n\n".join(parts) + "\n", sources


async def assemble(state: ContentState) -> dict:
    """Assemble the piece and count its words; the approval step shows exactly this text."""
    title, body, sources = assemble_piece(state)
    words = count_words(body)
    emit("assemble", "finished", title=title, words=words, sources=len(sources))
    return {"title": title, "piece": body, "sources": sources, "word_count": words}
