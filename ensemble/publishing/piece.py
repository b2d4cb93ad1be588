"""What gets published: an approved draft and the facts the front matter records about it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ensemble.publishing.errors import PublishError

FORMATS = ("blog", "brief", "newsletter")

_WORD = re.compile(r"\w+(?:['’-]\w+)*")


def count_words(text: str) -> int:
    """Words in a text; Markdown punctuation (`#`, `*`, `-`) does not count.

    The one count everywhere a piece's length is shown: approval, front matter, HTML page.
    """
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class Piece:
    """An approved draft (Markdown `body`), ready to publish; its title names its files.

    Attributes:
        sources: `(title, location)` pairs the piece cites.
        approved_by: Who approved it (e.g. "human", "--yes").
    """

    title: str
    body: str
    topic: str
    audience: str
    format: str
    tone: str
    sources: tuple[tuple[str, str], ...]
    thread_id: str
    approved_by: str

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise PublishError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        # Accept lists from callers but keep the dataclass hashable and immutable.
        pairs = tuple(tuple(pair) for pair in self.sources)
        if any(len(pair) != 2 or not all(isinstance(p, str) for p in pair) for pair in pairs):
            raise PublishError("sources must be (title, location) pairs of strings")
        object.__setattr__(self, "sources", pairs)

    @property
    def word_count(self) -> int:
        """Words in the body; Markdown punctuation (`#`, `*`, `-`) does not count."""
        return count_words(self.body)

    def draft_key(self) -> str:
        """Identify the exact approved text, so a replay finds its earlier publication.

        The title and body are hashed as a JSON pair, so ("ab", "c") and ("a", "bc") differ.
        """
        data = json.dumps([self.title, self.body], ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(data).hexdigest()
