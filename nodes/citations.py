"""Citations: find, attribute, renumber and check them. Pure functions, no model calls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

PASSAGE_CITATION = re.compile(r"\[([^\[\]\s]+#\d+)\]")
"""A passage id in brackets, as researchers write it: `[stdlib:json#0]`."""

NUMBERED_CITATION = re.compile(r"(?<![\w\[)])\[(\d+)\](?![\w(])")
"""A numbered citation, as the report uses it: `[3]`; not the index of `lists[0]` or `[[3]]`."""

_WORD = re.compile(r"\w{3,}")
MIN_COVERAGE = 0.6


def passage_ids_in(text: str) -> list[str]:
    """Passage ids cited in `text`, in order of first appearance."""
    return list(dict.fromkeys(PASSAGE_CITATION.findall(text)))


def numbers_in(text: str) -> list[int]:
    """Citation numbers used in `text`, in order of first appearance."""
    return list(dict.fromkeys(int(n) for n in NUMBERED_CITATION.findall(text)))


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def attribute(text: str, passages: Mapping[str, str]) -> str:
    """Cite uncited lines to the passage that contains most of their words.

    Models often state a fact from a passage and forget its id. A line is attributed only when
    at least 60% of its words occur in one passage, so nothing is cited to a passage that does
    not support it; lines that already cite something are left alone.
    """
    vocab = {pid: _words(body) for pid, body in passages.items()}
    lines = []
    for line in text.splitlines():
        words = _words(line)
        if line.strip() and not PASSAGE_CITATION.search(line) and len(words) >= 4:
            best, coverage = None, 0.0
            for pid, passage_words in vocab.items():
                share = len(words & passage_words) / len(words)
                if share > coverage:
                    best, coverage = pid, share
            if best is not None and coverage >= MIN_COVERAGE:
                line = f"{line.rstrip()} [{best}]"
        lines.append(line)
    return "\n".join(lines)


def drop_unknown(text: str, known: Iterable[str]) -> tuple[str, list[str]]:
    """Remove citations of passages that were never retrieved; return the text and the dropped."""
    allowed = set(known)
    dropped: list[str] = []

    def keep(match: re.Match[str]) -> str:
        if match.group(1) in allowed:
            return match.group(0)
        dropped.append(match.group(1))
        return ""

    return PASSAGE_CITATION.sub(keep, text), dropped


def renumber(text: str, numbers: Mapping[str, int]) -> str:
    """Replace `[passage-id]` citations with their report numbers `[n]`."""
    return PASSAGE_CITATION.sub(
        lambda m: f"[{numbers[m.group(1)]}]" if m.group(1) in numbers else "", text
    )
