"""Ranking search hits the way a reader would: topic pages first, legacy corners last.

FTS5's bm25 (with the porter stemmer, so "decorator" finds "decorators") picks the candidates.
Then two cheap signals a search engine would add re-order them:

- a **prior** per document: the language reference's topics are where Python's concepts are
  explained, so they weigh more; private modules (`_pydecimal`) and deprecated or tool-internal
  packages (`lib2to3`, `distutils`, `idlelib`) are rarely what a question is about, so they
  weigh less (they are still found when asked for by name);
- **title coverage**: a passage whose title carries the query's words is about them.

- **diversity**: each further hit from the same family (a topic, or a top-level package such
  as `email`) counts a little less, so one long page does not crowd out every other source.

A query word that is a Python keyword is kept when it is used as one ("the with statement",
"`yield`"), though as an English word ("with", "for", "if") it would be a stopword.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from ensemble.corpus.sources import HEADING_RULE, pydoc_chapters
from ensemble.text import keywords_in, stem

T = TypeVar("T")

TOPIC_PRIOR = 1.6
"""Weight of a language-reference topic (`pydoc:*`) relative to a module docstring."""

LEGACY_PRIOR = 0.45
"""Weight of private, deprecated and tool-internal modules."""

TITLE_BONUS = 0.8
"""Extra weight, times the share of the query's stems found in the title."""

SUMMARY_BONUS = 0.5
"""Extra weight, times the share of the query's stems (not in the title) the summary has."""

NAMED_BONUS = 1.5
"""Extra weight when the query names the document itself (`functools.wraps`, `with`)."""

REPEAT_DECAY = 0.8
"""Each further hit of the same family is weighted by this once more."""

LEGACY_PACKAGES = frozenset(
    """lib2to3 distutils idlelib turtledemo ensurepip msilib pydoc_data tkinter turtle
    asynchat asyncore imp smtpd cgi cgitb crypt nntplib telnetlib uu xdrlib pipes chunk
    mailcap nis ossaudiodev spwd sunau audioop aifc imghdr sndhdr sre_compile sre_parse
    sre_constants optparse""".split()
)
"""Deprecated (PEP 594 and others), superseded or tool-internal: rarely what a reader wants."""

DOCUMENTED_PRIVATE = frozenset({"_pyio", "_pydecimal", "_pydatetime"})
"""Pure-Python twins of C modules: where `io`'s, `decimal`'s (3.12+: `datetime`'s) docs live."""

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def prior(doc_id: str) -> float:
    """How much a document weighs before any query: topics high, legacy corners low.

    A chapter repeating other topics whole weighs as a module does: its dedicated topic says the
    same under a more telling title. `_pyio`, `_pydecimal`: pure-Python twins of documented
    modules, where the documentation lives as docstrings; not private corners.
    """
    if doc_id.startswith("pydoc:"):
        return 1.0 if doc_id[len("pydoc:") :] in pydoc_chapters() else TOPIC_PRIOR
    if doc_id.startswith("stdlib:"):
        parts = doc_id[len("stdlib:") :].split(".")
        private = [p for p in parts if p.startswith("_") and not p.startswith("__")]
        documented = private == [parts[0]] and parts[0] in DOCUMENTED_PRIVATE
        if parts[0] in LEGACY_PACKAGES or (private and not documented):
            return LEGACY_PRIOR
    return 1.0


def stems(words: Sequence[str]) -> set[str]:
    """The stems of `words`, for title matching (FTS5's porter stemmer does the real search)."""
    return {stem(w) for w in words}


_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+[0-9]*|[0-9]+")


def title_words(title: str, query_words: Sequence[str]) -> list[str]:
    """The words a title spells, identifiers taken apart the way a reader reads them.

    `token_urlsafe` is "token urlsafe", `ThreadPoolExecutor` is "thread pool executor", and
    `copyfile` is "copy file" when the query writes those two words apart ("copy a file").
    """
    words: list[str] = []
    joined = dict(_compound_pairs(query_words))
    for word in _WORD.findall(title.replace(".", " ")):
        words.append(word)
        for part in filter(None, word.split("_")):
            pieces = _CAMEL.findall(part)
            words.extend(pieces if len(pieces) > 1 else [part] if part != word else [])
            words.extend(joined.get(part.lower(), ()))
    return words


def names_in(query: str, words: Sequence[str]) -> set[str]:
    """What the query may name a document by: its words, keywords and dotted names."""
    dotted = {d.lower() for d in re.findall(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+", query)}
    return {w.lower() for w in words} | set(keywords_in(query)) | dotted


_SUMMARY_END = re.compile(r"(?<=[.!?])\s|\n\s*\n")


def summary(text: str) -> str:
    """The first sentence of a document's opening passage (after its heading): what it does.

    "Get an environment variable, return None if it doesn't exist." is os.getenv's; a reader
    who asks how to read one is asking for it, whatever else the docs around it say.
    """
    lines = text.strip().splitlines()
    if len(lines) > 1 and HEADING_RULE.match(lines[1]):
        lines = lines[2:]
    body = "\n".join(lines).strip()
    return body[: m.start()] if (m := _SUMMARY_END.search(body)) else body[:300]


def score(
    bm25: float,
    doc_id: str,
    title: str,
    query_words: Sequence[str],
    named: set[str],
    opening: str = "",
) -> float:
    """The final score of a hit: bm25 (positive, higher is better) times prior and bonuses.

    `opening` is the summary sentence when the hit is its document's first passage.
    """
    wanted = stems(query_words)
    in_title = stems(title_words(title, query_words))
    coverage = len(wanted & in_title) / len(wanted) if wanted else 0.0
    in_summary = stems(_WORD.findall(opening)) - in_title
    summarised = len(wanted & in_summary) / len(wanted) if wanted else 0.0
    name = doc_id.split(":", 1)[-1].lower()
    is_named = name in named or any("." in n and name.endswith("." + n) for n in named)
    parts = name.split(".")
    if not is_named and len(parts) >= 2:  # "start a thread with threading": threading.Thread
        # Every class part must be asked ("wait" alone is not Barrier.wait); a submodule's name
        # is where the code lives, not what it is called (asyncio.runners.run is asyncio.run).
        is_named = all(
            stems([part]) & wanted
            for i, part in enumerate(doc_id.split(":", 1)[-1].split("."))
            if i in (0, len(parts) - 1) or not part.islower()
        )
    factor = prior(doc_id) * (1.0 + TITLE_BONUS * coverage) * (1.0 + NAMED_BONUS * is_named)
    factor *= 1.0 + SUMMARY_BONUS * summarised
    return bm25 * factor


def family(doc_id: str) -> str:
    """What counts as "the same source" for diversity: a topic, or a top-level package."""
    kind, _, name = doc_id.partition(":")
    return f"{kind}:{name.split('.')[0]}" if kind == "stdlib" else doc_id


def diversify(scored: Sequence[tuple[float, str, T]]) -> list[T]:
    """Order (score, doc_id, item) best first, each repeat of a family decayed once more."""
    left = sorted(scored, key=lambda hit: -hit[0])
    seen: dict[str, int] = {}
    out: list[T] = []
    while left:
        best = max(
            range(len(left)),
            key=lambda i: (left[i][0] * REPEAT_DECAY ** seen.get(family(left[i][1]), 0), -i),
        )
        _, doc_id, item = left.pop(best)
        seen[family(doc_id)] = seen.get(family(doc_id), 0) + 1
        out.append(item)
    return out


def compounds(words: Sequence[str]) -> list[str]:
    """Adjacent query words written as one ("named tuple" -> "namedtuple", "read line")."""
    return list(dict.fromkeys(joined for joined, _ in _compound_pairs(words)))


def _compound_pairs(words: Sequence[str]) -> list[tuple[str, tuple[str, str]]]:
    """Each compound of two adjacent query words, with the two words it joins."""
    out: list[tuple[str, tuple[str, str]]] = []
    for first, second in zip(words, words[1:], strict=False):
        singular = (first.rstrip("s"), second.rstrip("s"))
        for joined in (first + second, first + singular[1], singular[1] + singular[0]):
            joined = joined.lower()  # the last: "tuple with named fields" -> "namedtuple"
            if joined.isalpha() and len(joined) >= 7:
                out.append((joined, (first, second)))
    return out
