"""Scoring one research answer against a question's expected sources. Pure functions.

Everything here reads the research run's output as a user sees it (the report's body, its
numbered source list, the planner's sub-questions) and never calls a model, so a score can be
recomputed from a saved thread and tested exactly.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ensemble.text import tokens

BOUNDARIES = "#./:"
"""Characters after which an id continues into a part of the same source.

`stdlib:json` takes `stdlib:json.loads#1` (a member) and `stdlib:json#2` (a passage),
`file:docs` takes `file:docs/a.md#1` and `file:` every file; but `stdlib:os` does not take
`stdlib:ossaudiodev#1`, nor `pydoc:context` `pydoc:context-managers#1`.
"""

SOURCES_HEADING = re.compile(r"^## Sources[ \t]*$", re.MULTILINE)
"""The heading of the report's source list (the synthesizer writes it; notes follow it)."""

NUMBERED_MARKER = re.compile(r"(?<![\w\[)])\[(\d+(?:\s*,\s*\d+)*)\](?![\w(])")
"""`[3]`, or a group `[1, 3]` as some models write it (each number counts as one marker); not
the index of `lists[0]` or a nested list `[[3]]`."""

PASSAGE_MARKER = re.compile(r"\[([^\[\]\s,]+#\d+)\]")
"""A raw passage id in brackets, `[stdlib:json#1]`, left in the text instead of a number."""

QUESTION_WORDS = frozenset(
    """What How Why When Where Which Who Whom Whose Is Are Was Were Do Does Did Can Could Should
    Would Will Shall May Might Must Has Have Had""".split()
)
"""The words a well-formed question may start with, capitalised exactly so."""

DANGLING_WORDS = frozenset(
    """a an the and or but nor of to in on at by for with from about into than as that which
    whose its their is are was were be""".split()
)
"""Words a finished question does not end with ("How does X compare to?")."""

FRAGMENT_MARKERS = ("...", "…", "??", "?!", "!?", " ?", "|", "{", "}", "<", ">", "TODO", "\t")
"""Text that marks a cut, templated or unfinished sentence."""

MIN_QUESTION_WORDS = 4
MAX_QUESTION_WORDS = 40

_PAIRS = (("(", ")"), ("[", "]"), ('"', '"'), ("`", "`"), ("“", "”"))


def matches(passage_id: str, expected: str) -> bool:
    """Whether a cited passage id is the expected source or a part of it.

    An expected entry is a whole passage id, or a prefix that ends where an id part ends:
    `pydoc:with` matches `pydoc:with#1`, `stdlib:functools.wraps` matches
    `stdlib:functools.wraps#1`, and `stdlib:json#` matches only the json module's own
    docstring passages. A prefix that stops inside a name matches nothing else
    (`pydoc:with` does not match `pydoc:withdrawn#1`).
    """
    if not expected or not passage_id.startswith(expected):
        return False
    if len(passage_id) == len(expected) or expected[-1] in BOUNDARIES:
        return True
    return passage_id[len(expected)] in BOUNDARIES


def is_expected(passage_id: str, expect: Iterable[str]) -> bool:
    """Whether `passage_id` matches any of the expected entries."""
    return any(matches(passage_id, entry) for entry in expect)


def report_body(report: str) -> str:
    """The report's answer: without its title line, its source list and what follows it.

    After the source list comes the reviewer's outcome note, which may quote a bad citation
    ("citation [7] matches no source"); it is not part of the answer.
    """
    headings = list(SOURCES_HEADING.finditer(report))
    body = report[: headings[-1].start()] if headings else report
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines).strip()


def is_well_formed_question(text: str) -> bool:
    """Whether `text` reads as one complete question a researcher can search for.

    Strict on purpose: a planner's sub-question is a searchable task, so keywords ("decorators
    work"), fragments, lists and templates do not count. It must be one line with a single
    question mark, at its end; start with a capitalised question word or auxiliary ("What",
    "How", "Does", ...); have 4 to 40 words; end on a content word (not "... compare to?");
    and contain no fragment marker (an ellipsis, "??", a space before the "?", "|", braces,
    angle brackets, "TODO") or unbalanced brackets or quotes.
    """
    if not isinstance(text, str):
        return False
    stripped = text.strip()
    if "\n" in stripped or "\r" in stripped or not stripped.endswith("?"):
        return False
    if stripped.count("?") != 1 or any(marker in stripped for marker in FRAGMENT_MARKERS):
        return False
    if not _balanced(stripped):
        return False
    words = tokens(stripped)
    if not MIN_QUESTION_WORDS <= len(words) <= MAX_QUESTION_WORDS:
        return False
    if not stripped.startswith(words[0]) or words[0] not in QUESTION_WORDS:
        return False  # "- What ...", "1. How ...", "what ..." or "WHAT ..."
    return words[-1].lower() not in DANGLING_WORDS


def _balanced(text: str) -> bool:
    return all(
        text.count(opening) % 2 == 0
        if opening == closing
        else text.count(opening) == text.count(closing)
        for opening, closing in _PAIRS
    )


@dataclass(frozen=True)
class Score:
    """How one research answer fares against what its question expects."""

    cited: tuple[str, ...]
    """Passage ids the report's body cites, each once, in order of first citation."""
    expected_cited: tuple[str, ...]
    """Those of `cited` that match an expected entry."""
    markers: int
    """Citation markers in the report's body (`[1, 3]` counts two)."""
    valid_markers: int
    """Markers that point at a source of the report's list (a retrieved passage)."""
    subquestions: tuple[str, ...] = ()
    """The planner's sub-questions."""
    well_formed: int = 0
    """How many of `subquestions` are well-formed questions."""
    unknown: tuple[str, ...] = ()
    """Markers that point at nothing, as written (`[9]`, `[stdlib:x#1]`)."""

    @property
    def hit(self) -> bool:
        """The answer cites at least one expected source."""
        return bool(self.expected_cited)

    @property
    def precision(self) -> float | None:
        """Share of the cited sources that are expected; None when nothing is cited."""
        return len(self.expected_cited) / len(self.cited) if self.cited else None

    @property
    def citation_validity(self) -> float | None:
        """Share of the markers that point at a source; None when there are no markers."""
        return self.valid_markers / self.markers if self.markers else None

    @property
    def well_formed_share(self) -> float | None:
        """Share of the sub-questions that are well-formed; None without a plan."""
        return self.well_formed / len(self.subquestions) if self.subquestions else None


def score_answer(
    output: Mapping[str, Any],
    expect: Sequence[str],
    retrieved: Collection[str] | None = None,
    asked: str = "",
) -> Score:
    """Score a research run's output (`report`, `sources`, `plan`) against `expect`.

    A numbered marker is valid when its number is in the source list and, when `retrieved` is
    given, that source's passage was retrieved in the run; a bracketed passage id is valid
    when it is one of the listed or retrieved passages. The valid markers make up `cited`.
    A sub-question that is `asked`, the user's question as asked, counts as well-formed: the
    planner did not write it ("... and what are their defaults?" ends on "are", and asks).
    """
    body = report_body(str(output.get("report") or ""))
    numbered = {
        int(s["n"]): str(s["passage_id"])
        for s in output.get("sources") or []
        if isinstance(s, Mapping) and "n" in s and "passage_id" in s
    }
    known = set(numbered.values()) | set(retrieved or ())
    usable = {n: pid for n, pid in numbered.items() if retrieved is None or pid in retrieved}
    numbers = [int(n) for group in NUMBERED_MARKER.findall(body) for n in group.split(",")]
    found = [(str(n), usable.get(n)) for n in numbers]
    found += [(pid, pid if pid in known else None) for pid in PASSAGE_MARKER.findall(body)]
    cited = dict.fromkeys(pid for _, pid in found if pid is not None)
    unknown = tuple(f"[{shown}]" for shown, pid in found if pid is None)
    plan = tuple(_subquestion_texts(output.get("plan")))
    asked = _normal(asked)
    return Score(
        cited=tuple(cited),
        expected_cited=tuple(pid for pid in cited if is_expected(pid, expect)),
        markers=len(found),
        valid_markers=len(found) - len(unknown),
        subquestions=plan,
        well_formed=sum(_normal(q) == asked or is_well_formed_question(q) for q in plan),
        unknown=unknown,
    )


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _subquestion_texts(plan: Any) -> Iterable[str]:
    for item in plan or []:
        text = item.get("question") if isinstance(item, Mapping) else item
        if isinstance(text, str):
            yield text


def share(part: int, whole: int) -> float | None:
    """`part / whole`, or None when `whole` is 0 (a rate of nothing is undefined, not 0)."""
    return part / whole if whole else None


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values, or None when none is defined."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
