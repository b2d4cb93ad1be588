"""Sub-questions a person would write, from a question and the corpus's own titles.

The offline model plans by rule, not by understanding, so the rules must be good ones. A plan
is the question as asked, what its topic is ("What are decorators?"), and one question per
related title the prompt lists (the planner shows the titles of the best passages, which are
the corpus's real vocabulary): "What does functools.wraps do?", 'How does the "with" statement
work?'. Each is a whole question; nothing is invented beyond the template's few words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ensemble.text import key_terms, keywords_in

MAX_QUESTIONS = 3
"""A plan longer than this spreads a simple question thin."""

TITLES_CONSIDERED = 3
SNIPPET_SHARED = 2
"""Only the best few titles the prompt lists may become questions: further down, off topic."""

RELATED_TOPIC_WORDS = 5
"""Longest topic a section is asked about ("How do string literals relate to f-strings?");
beyond it the question reads as a template ("How does X relate to the difference between...")."""

_ASKING = re.compile(
    r"^\s*(?:(?:how|what|why|when|where|which|who)\s+)?"
    r"(?:(?:does|do|did|is|are|was|were|can|could|should|would|will|to)\b)?\s*"
    r"(?:(?:i|you|we|one)\s+)?",
    re.IGNORECASE,
)
_TRAILING = re.compile(
    r"(?:\s+(?:in|with|using)\s+python(?:\s*3)?|\s+works?|\s+in\s+practice)+\s*$", re.IGNORECASE
)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*•]\s+(.+?)\s*$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def question_of(request: str) -> str:
    """The question in a request: its first line ending with "?", else its first line."""
    lines = [line.strip() for line in request.splitlines() if line.strip()]
    for line in lines:
        if line.endswith("?") and not _BULLET.match(line):
            return _strip_label(line)
    return _strip_label(lines[0]) if lines else ""


def topic_of(question: str) -> str:
    """The topic a question asks about: "How do decorators work in Python?" -> "decorators"."""
    text = question.strip().rstrip("?").strip()
    text = _ASKING.sub("", text, count=1)
    text = _TRAILING.sub("", text)
    return text.strip(" ,.;:")


def as_question(text: str) -> str:
    """A request that is not a question becomes one ("decorators" -> "What is known ...?")."""
    text = " ".join(text.split()).rstrip(".!;:")
    if text.endswith("?") and len(text.split()) >= 3:
        return text[0].upper() + text[1:]
    return f"What does the documentation say about {text.rstrip('?')}?"


def plan_questions(request: str, limit: int = MAX_QUESTIONS) -> list[str]:
    """Up to `limit` distinct, whole sub-questions for the question in `request`."""
    asked = question_of(request)
    if not asked:
        return []
    topic = topic_of(asked)
    parts = part_questions(asked, topic)
    if parts:  # "How do A, B and C work?": one researcher per part, as a person would split it
        return _distinct(parts)[: max(1, limit)]
    candidates = [as_question(asked)]
    definition = _definition_question(asked, topic)
    if definition:
        candidates.append(definition)
    topic_terms = _content_terms(topic or asked)
    concept = bool(definition) or asked.lower().startswith(("what is", "what are"))
    for rank, (title, snippet) in enumerate(related_titles(request)[:TITLES_CONSIDERED]):
        shared_title = topic_terms & _content_terms(title.replace(".", " "))
        shared_text = topic_terms & _content_terms(snippet)
        needed = 1 if rank == 0 and _DOTTED.match(title) else SNIPPET_SHARED  # the best API hit
        if not shared_title and len(shared_text) < needed:
            continue  # a title about something else: not worth a researcher
        question = title_question(title, topic if concept else "")
        if question:
            candidates.append(question)
    return _distinct(candidates)[: max(1, min(limit, MAX_QUESTIONS))]


def part_questions(asked: str, topic: str) -> list[str]:
    """One question per part of an enumeration ("How do A, B and C work?"); [] for none."""
    form = re.match(
        r"^(how)\s+(?:do|does)\s+(.+?)\s+work(?:\s+in\s+python)?\?$|^(what)\s+(?:is|are)\s",
        asked,
        re.I,
    )
    if form is None or re.search(r"\b(?:between|difference|versus|vs)\b", topic, re.I):
        return []  # "the difference between A and B" is one question, not two
    listed = form.group(2) if form.group(1) else topic
    items = [i.strip() for i in re.split(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", listed)]
    items = [_ARTICLE.sub("", i) for i in items if i and len(i.split()) <= 5]
    if len(items) < 2:
        return []
    if form.group(1):
        return [f"How {'do' if _plural(i) else 'does'} {i} work?" for i in items]
    return [_what_is(i) for i in items]


def _what_is(noun: str) -> str:
    """A definition question: "What is a list?" for "lists", "What is json in Python?"."""
    if _plural(noun):
        return f"What is {_a(noun[:-1])}?"
    return f"What is {noun}?" if len(noun.split()) > 1 else f"What is {noun} in Python?"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def related_titles(request: str) -> list[tuple[str, str]]:
    """Bullet lines of the request as (title, snippet): "- Title: snippet"."""
    bullets = (_BULLET.match(line) for line in request.splitlines())
    parts = [bullet.group(1).partition(": ") for bullet in bullets if bullet]
    return [(title.strip(), snippet.strip()) for title, _, snippet in parts]


def title_question(title: str, topic: str) -> str:
    """A question about one corpus title, as a reader would ask it ("" for none worth asking).

    A section heading is asked about in relation to `topic`; without a topic (the question is
    a task, "How do I ...?") it is left out.
    """
    name = title.split(" — ")[0].strip().strip('"')
    if _DOTTED.match(name):
        return f"What does {name} do?"
    if _IDENTIFIER.match(name):
        return f"What does the {name} module provide?"
    if re.match(r'^The\s+"\w+"\s+statement$', name):
        return f"How does the {name[4:]} work?"
    heading = name if re.search(r'["`_.()]|[A-Z]{2}', name[1:]) else name.lower()
    heading = _ARTICLE.sub("", heading)
    if not topic or len(topic.split()) > RELATED_TOPIC_WORDS:
        return ""  # next to a task, or to a long clause, its relation is not worth asking
    if _content_terms(topic) <= _content_terms(heading):
        return f"What does the documentation say about {heading}?"
    verb = "do" if _plural(heading) else "does"
    return f"How {verb} {heading} relate to {topic}?"


def _definition_question(asked: str, topic: str) -> str:
    """A "What is a decorator?" for a how-does-it-work question; "" when it adds nothing."""
    if len(topic.split()) > 5 or asked.lower().startswith(("what is", "what are")):
        return ""
    if not _content_terms(topic):
        return ""
    if not re.match(r"^how\s+(?:do|does)\s+(?!i\b|you\b|we\b|one\b).+\bwork", asked, re.I):
        return ""  # only "How does X work?" asks what X is; a task or a "why" would miss it
    noun = _ARTICLE.sub("", topic)
    return _what_is(noun) if _plural(noun) else f"What is {_a(noun)}?"


def _plural(phrase: str) -> bool:
    last = phrase.split()[-1].lower().strip("\"'`") if phrase.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is", "'s"))


def _content_terms(text: str) -> set[str]:
    """The words that carry a topic, Python keywords used as keywords included ("with")."""
    return key_terms(text) | set(keywords_in(text))


def _strip_label(line: str) -> str:
    return re.sub(r"^(?:question|q)\s*:\s*", "", line, flags=re.IGNORECASE).strip()


def _distinct(questions: Iterable[str]) -> list[str]:
    unique: dict[frozenset[str], str] = {}
    for question in filter(None, questions):
        opener = question.split()[0].lower() if question.split() else ""
        key = frozenset({opener, *_content_terms(question), *keywords_in(question)})
        unique.setdefault(key, question)
    return list(unique.values())
