"""When two texts name the same item: one normalisation for every scenario.

A planner's sub-question, a reviewer's gap, a person's edit, an editor's request: each is
compared (and its id derived) after this normalisation, so "What is X?" and "what is  x" are one
item everywhere: the same note, the same stall, the same task id.
"""

from __future__ import annotations

import hashlib

_TRAILING = "?.!:; "


def same_key(text: str) -> str:
    """The comparison key of `text`: case-folded, whitespace collapsed, end punctuation gone."""
    return " ".join(text.casefold().split()).rstrip(_TRAILING)


def item_id(prefix: str, text: str) -> str:
    """A stable id derived from the item's text, so the same item keeps its work."""
    return f"{prefix}-{hashlib.sha1(same_key(text).encode()).hexdigest()[:8]}"


def unique(texts: list[str]) -> list[str]:
    """`texts` with blank entries and repeats (by `same_key`) dropped, order kept."""
    seen: set[str] = set()
    kept: list[str] = []
    for text in texts:
        flat = " ".join(text.split())
        key = same_key(flat)
        if key and key not in seen:
            seen.add(key)
            kept.append(flat)
    return kept
