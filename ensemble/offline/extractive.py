"""Text utilities for the offline model: tokens, key phrases, sentences, unit scoring.

Everything here is a pure, deterministic function of its input, so the offline model
built on top of it answers the same way every time and only ever quotes its prompt.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from ensemble.text import (
    GENERIC_STEMS,
    MARKER,
    TOKEN,
    TRAILING_MARKERS,
    is_stopword,
    sentences,
    terms,
)

_INLINE_GAP = re.compile(r"[ \t]+")
_LEAD_MARKER = re.compile(rf"^\s*({MARKER})")
_ANY_MARKER = re.compile(MARKER)


class Unit(NamedTuple):
    """A quotable piece of text: a line, or one sentence of a long line.

    `lead` is the bracketed marker (e.g. ``[stdlib:json#0]``) heading the paragraph the
    unit came from, kept so a quoted sentence can still be attributed to its source.
    It is empty when the unit carries a marker itself or none is in scope.
    """

    text: str
    lead: str = ""

    def render(self) -> str:
        """Return the unit as an output line, its inherited marker after it like a citation."""
        return f"{self.text} {self.lead}" if self.lead else self.text


_LABEL = re.compile(r"^([ \t]*)[A-Z][a-z]+(?:[- ][a-z]+)?:[ \t]+(?=\S)", re.MULTILINE)


def without_labels(request: str) -> str:
    """A request without its line labels: "Sub-question: How ..." asks "How ...".

    A label names the field, not the topic; left in, "question" would be searched for and
    would make every passage that says "question" look relevant.
    """
    return _LABEL.sub(r"\1", request)


def key_phrases(text: str) -> list[str]:
    """Return maximal runs of non-stopword tokens, as written, in order of appearance.

    A run breaks at stopwords, punctuation and line breaks. Phrases are deduplicated
    case-insensitively and those without a letter (e.g. the "3" of "[3]") are dropped.
    """
    phrases: dict[str, str] = {}
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            phrase = text[run[0].start() : run[-1].end()]
            if re.search(r"[A-Za-z]", phrase):
                phrases.setdefault(phrase.lower(), phrase)
            run.clear()

    for match in TOKEN.finditer(text):
        if is_stopword(match.group()):
            flush()
            continue
        if run and not _INLINE_GAP.fullmatch(text[run[-1].end() : match.start()]):
            flush()
        run.append(match)
    flush()
    return list(phrases.values())


def split_units(text: str, max_line: int = 300) -> list[Unit]:
    """Cut `text` into units: non-empty lines, long lines further into sentences.

    A line opening with a bracketed marker makes that marker the `lead` of the unmarked
    units after it, up to the next blank line or marker line: that is how a passage
    rendered as ``[id] title`` over its text keeps its id when one sentence is quoted.
    Likewise a long line ending in markers (a note's finding, "... [2]") lends them to each
    of its sentences, so a quoted sentence keeps its citation.
    """
    units: list[Unit] = []
    lead = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            lead = ""
            continue
        head = _LEAD_MARKER.match(line)
        if head:
            lead = head.group(1)
        pieces = sentences(line) if len(line) > max_line else [line]
        closing = TRAILING_MARKERS.search(line) if len(pieces) > 1 else None
        scope = lead or (closing.group(1).strip() if closing else "")  # "[2]" ends the line
        units.extend(Unit(piece, "" if _ANY_MARKER.search(piece) else scope) for piece in pieces)
    return units


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """Tell whether two texts say (almost) the same: same words or Jaccard >= threshold."""
    if " ".join(a.lower().split()) == " ".join(b.lower().split()):
        return True
    ta, tb = set(terms(a)), set(terms(b))
    return bool(ta and tb) and jaccard(ta, tb) >= threshold


def jaccard(a: set[str], b: set[str]) -> float:
    """Share of terms two bags have in common: how much one unit repeats another."""
    return len(a & b) / max(1, len(a | b))


def introduces(text: str) -> bool:
    """Tell whether a unit only introduces what follows ("... by default:").

    Alone it says nothing, and what it introduces (a list, a table, an example) is not in it.
    """
    return TRAILING_MARKERS.sub("", text).rstrip().endswith(":")


def is_question(text: str) -> bool:
    """Tell whether a unit is a question (a question never answers anything)."""
    return text.rstrip().rstrip("*_`\"')]").endswith("?")


def score_units(
    units: Sequence[str],
    query: str,
    *,
    own: Sequence[bool] | None = None,
    hint: str = "",
    hint_weight: float = 0.25,
) -> list[float]:
    """Score each unit by IDF-weighted (1 + ln(N / df)) overlap of its terms with the query's.

    A unit that is itself part of the query (`own`) only scores for terms found elsewhere in
    the query too, or a long request would rank its own lines first. `hint` words (a field's
    name and description) count at `hint_weight`: enough to break ties, not to override.
    """
    unit_terms = [set(terms(u)) for u in units]
    n = len(unit_terms)
    df = Counter(t for ts in unit_terms for t in ts)
    query_count = Counter(
        t for u in split_units(query) for t in set(terms(u.text)) if t not in GENERIC_STEMS
    )
    hint_terms = set(terms(hint)) - set(query_count)
    scores: list[float] = []
    for i, ts in enumerate(unit_terms):
        is_own = bool(own and own[i])
        score = 0.0
        for t in ts:
            idf = 1.0 + math.log(n / df[t])
            if query_count[t] > (1 if is_own else 0):
                score += idf
            elif t in hint_terms:
                score += hint_weight * idf
        scores.append(score)
    return scores


def diverse_top(
    units: Sequence[str],
    scores: Sequence[float],
    *,
    limit: int,
    floor: float = 0.35,
    redundancy: float = 0.6,
) -> list[int]:
    """Pick up to `limit` units by relevance and novelty (maximal marginal relevance).

    Only units scoring at least `floor` times the best are candidates: a weak match dilutes
    an answer more than it adds. Each next pick maximises its score minus `redundancy` times
    its overlap (Jaccard of terms) with what is already picked. Returns indices in text order.
    """
    if not scores or max(scores) <= 0:
        return []
    best = max(scores)
    candidates = [i for i, s in enumerate(scores) if s > 0 and s >= floor * best]
    bags = {i: set(terms(units[i])) for i in candidates}
    chosen: list[int] = []
    while candidates and len(chosen) < limit:

        def gain(i: int) -> float:
            overlap = max((jaccard(bags[i], bags[j]) for j in chosen), default=0.0)
            return scores[i] / best - redundancy * overlap

        # a unit saying (almost) what a picked one says adds no information
        candidates = [i for i in candidates if all(jaccard(bags[i], bags[j]) < 0.7 for j in chosen)]
        if not candidates:
            break
        pick = max(candidates, key=lambda i: (gain(i), -i))
        if chosen and gain(pick) <= 0:
            break
        chosen.append(pick)
        candidates.remove(pick)
    return sorted(chosen)
