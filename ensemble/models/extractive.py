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

from ensemble.corpus.ranking import HOW_TO_WORDS, keywords_in, operator_words

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't
    do does doesn't doing don't down during each either else etc even ever every few for
    from further get gets got had hadn't has hasn't have haven't having he her here hers
    herself him himself his how however i if in into is isn't it it's its itself just let
    let's may me might more most much must mustn't my myself neither no nor not now of off
    often on once only or other ought our ours ourselves out over own per please rather
    really same shall shan't she should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they this those though through thus to
    too under until up upon us very via was wasn't we were weren't what what's when where
    which while who whom whose why will with within without won't would wouldn't yes yet you
    your yours yourself yourselves
    describe describes discuss explain explains give list outline show summarise summarize
    tell
    """.split()
)
"""English function words plus a few instruction verbs ("explain", "describe") that
carry no topic; they split key phrases and are ignored when scoring."""

GENERIC = HOW_TO_WORDS | {"python", "statement", "statements"}
"""Words that say nothing about the topic of a question about Python's documentation."""

_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:['’.\-/][A-Za-z0-9_]+)*(?:\+\+|#)?")
_INLINE_GAP = re.compile(r"[ \t]+")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_MARKER = r"\[(?:\d{1,3}|[^\[\]\s]{1,120}#\d+)\](?!\()"  # [3] or [stdlib:json#0]; not ['a']
_LEAD_MARKER = re.compile(rf"^\s*({_MARKER})")
_TRAILING_MARKERS = re.compile(rf"((?:\s*{_MARKER})+)\s*$")
_ANY_MARKER = re.compile(_MARKER)


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


def tokens(text: str) -> list[str]:
    """Return the word tokens of `text` in order, original casing kept."""
    return _TOKEN.findall(text)


def stem(word: str) -> str:
    """Strip common English suffixes so "schedules"/"scheduled"/"scheduling" match."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith("sses"):
        return w[:-2]
    for suffix, min_len in (("ing", 6), ("ed", 5), ("s", 4)):
        if len(w) >= min_len and w.endswith(suffix) and not w.endswith(("ss", "us", "is")):
            w = w[: -len(suffix)]
            break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def is_stopword(token: str) -> bool:
    """Tell whether `token` is a function word (case-insensitive)."""
    return token.lower().replace("’", "'") in STOPWORDS


def terms(text: str) -> list[str]:
    """Return the content terms of `text`: lowercased, stopwords dropped, stemmed.

    Compound tokens such as ``json.loads`` also contribute their parts, so a query for
    "loads" still matches them.
    """
    out: list[str] = [kw for kw in keywords_in(text)]  # "the with statement": "with" counts
    out += [stem(w) for w in operator_words(text)]  # "//" is "floor division" in the docs
    for tok in tokens(text):
        if is_stopword(tok):
            continue
        parts = [tok, *re.split(r"[.\-/]", tok)] if re.search(r"[.\-/]", tok) else [tok]
        for part in parts:
            if len(part) > 1 and not is_stopword(part):
                out.append(stem(part))
    return out


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
    phrases: list[str] = []
    seen: set[str] = set()
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            phrase = text[run[0].start() : run[-1].end()]
            if re.search(r"[A-Za-z]", phrase) and phrase.lower() not in seen:
                seen.add(phrase.lower())
                phrases.append(phrase)
            run.clear()

    for match in _TOKEN.finditer(text):
        if is_stopword(match.group()):
            flush()
            continue
        if run and not _INLINE_GAP.fullmatch(text[run[-1].end() : match.start()]):
            flush()
        run.append(match)
    flush()
    return phrases


def sentences(text: str) -> list[str]:
    """Split `text` into sentences (each line separately); every one is a substring."""
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            end = match.end()
            if end < len(line) and not line[end].islower():
                piece = line[start:end].strip()
                if piece:
                    out.append(piece)
                start = end
        piece = line[start:].strip()
        if piece:
            out.append(piece)
    return out


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
        closing = _TRAILING_MARKERS.search(line) if len(pieces) > 1 else None
        scope = lead or (closing.group(1).strip() if closing else "")  # "[2]" ends the line
        for piece in pieces:
            inherited = "" if (not scope or _ANY_MARKER.search(piece)) else scope
            units.append(Unit(piece, inherited))
    return units


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    """Tell whether two texts say (almost) the same: same words or Jaccard >= threshold."""
    if " ".join(a.lower().split()) == " ".join(b.lower().split()):
        return True
    ta, tb = set(terms(a)), set(terms(b))
    if not ta or not tb:
        return False
    return len(ta & tb) / len(ta | tb) >= threshold


def introduces(text: str) -> bool:
    """Tell whether a unit only introduces what follows ("... by default:").

    Alone it says nothing, and what it introduces (a list, a table, an example) is not in it.
    """
    return _TRAILING_MARKERS.sub("", text).rstrip().endswith(":")


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
    """Score each unit by IDF-weighted overlap of its terms with the query's terms.

    Args:
        units: Texts to score.
        query: The text the units should answer; its distinct terms count once each.
        own: Per unit, whether it is itself a part of `query`. Such a unit only scores
            for terms that also occur elsewhere in the query; otherwise a long request
            would rank its own lines first just for containing their own words.
        hint: Extra words (e.g. a field's name and description) counted at
            `hint_weight`, enough to break ties without overriding the query.
        hint_weight: Weight of a hint term relative to a query term.

    Returns:
        One score per unit, 0.0 for no overlap. IDF = 1 + ln(N / df) over the units.
    """
    unit_terms = [set(terms(u)) for u in units]
    n = len(unit_terms)
    df = Counter(t for ts in unit_terms for t in ts)
    query_count = Counter(
        t for u in split_units(query) for t in set(terms(u.text)) if t not in _GENERIC_STEMS
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


_CODE_HINTS = re.compile(
    r"^\s*(>>>|\.\.\.|\$ |#|[-=*~^]{3,})|::=|\b(?:def|class|import)\s+\w+.*:$"
    r"|(?:^|\s)\w+ = [\w.]+\("  # "x = copy.copy(y)": an assignment from a call is code
)
_HEADER_LINE = re.compile(r"^\s*\[[^\[\]\n]{1,80}\]\s+[^.!?]{1,120}\)\s*$")
MIN_PROSE_WORDS = 4
_LINK = re.compile(r"<[^<>\s]+>|https?://\S+")  # a link is not words of the sentence
MAX_PROSE_WORDS = 70
_INLINE_CODE = re.compile(r"\"[^\"\n]{1,80}\"|`[^`\n]{1,80}`")


def is_prose(text: str) -> bool:
    """Tell whether a unit is a sentence a reader can use: not code, a rule, or a header line.

    A passage's header (``[id] title (source)``), a doctest line, an assignment or a grammar
    rule would be quoted as if it answered something; prose of six to seventy words (four if
    it ends with a period), mostly letters, does. A longer "sentence" is text the splitter
    could not cut: a listing or a session log. Inline code (`"s.append(x)"`, as the docs quote
    it) counts as one word, so a sentence about code is still prose.
    """
    if _CODE_HINTS.search(text) or _HEADER_LINE.match(text):
        return False
    bare = _INLINE_CODE.sub("code", _LINK.sub("", _TRAILING_MARKERS.sub("", text)))
    words = tokens(bare)
    short = len(words) < 6 and not bare.rstrip().endswith(".")
    if short or not MIN_PROSE_WORDS <= len(words) <= MAX_PROSE_WORDS:
        return False  # "Start the thread's activity." is a sentence; "Simple JSON decoder" not
    letters = sum(c.isalpha() or c.isspace() for c in bare)
    if letters / max(1, len(bare)) < 0.75:
        return False
    parts = sentences(bare.replace(". ", ".\n"))  # "object: dict. array: list." is a table
    return len(parts) < 3 or len(words) / len(parts) >= 4


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
            overlap = max(
                (len(bags[i] & bags[j]) / max(1, len(bags[i] | bags[j])) for j in chosen),
                default=0.0,
            )
            return scores[i] / best - redundancy * overlap

        candidates = [i for i in candidates if not _repeats(bags[i], [bags[j] for j in chosen])]
        if not candidates:
            break
        pick = max(candidates, key=lambda i: (gain(i), -i))
        if chosen and gain(pick) <= 0:
            break
        chosen.append(pick)
        candidates.remove(pick)
    return sorted(chosen)


def _repeats(bag: set[str], picked: list[set[str]], threshold: float = 0.7) -> bool:
    """Tell whether a unit says (almost) what a picked one says: no new information."""
    return any(len(bag & p) / max(1, len(bag | p)) >= threshold for p in picked)


def key_terms(text: str) -> set[str]:
    """The terms that carry a text's topic: `terms` without generic words ("work", "python")."""
    return set(terms(text)) - _GENERIC_STEMS


_GENERIC_STEMS = frozenset(stem(g) for g in GENERIC)
