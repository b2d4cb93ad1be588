"""Words of English text about Python: one tokenizer, one stemmer, one stopword list.

The corpus search, the reviewer's checks and the offline model all read text the same way, so
a word one of them finds is a word the others find. Every function is pure and deterministic.
"""

from __future__ import annotations

import keyword
import re

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because
    been before being below between both but by can can't cannot could couldn't did didn't
    do does doesn't doing don't down during each either else etc even ever every few for
    from further get gets got had hadn't has hasn't have haven't having he her here hers
    herself him himself his how however i if in into is isn't it it's its itself just let
    let's may me might more most much must mustn't my myself neither no nor not now of off
    often on once only or other ought our ours ourselves out over own please rather
    really same shall shan't she should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they this those though through thus to
    too under until up upon us very via was wasn't we were weren't what what's when where
    whether which while who whom whose why will with within without won't would wouldn't yes
    yet you your yours yourself yourselves
    """.split()
)
"""English function words: they carry no topic, so neither a search nor a score uses them."""

REQUEST_WORDS = frozenset(
    """describe describes discuss explain explains give list outline show summarise summarize
    tell""".split()
)
"""Verbs a request uses to ask ("explain", "describe"): no topic in a request's terms."""

HOW_TO_WORDS = frozenset(
    "way ways thing things work works working use used using example examples".split()
)
"""Words every how-to question uses ("how does X work", "an example of using Y"): no topic."""

KEYWORD_CONTEXT = frozenset(
    "statement statements keyword keywords clause clauses expression expressions loop loops "
    "block blocks operator operators".split()
)
"""Words after a keyword that show it is meant as the keyword ("the with statement")."""

TOKEN = re.compile(r"\w+(?:['’.\-/]\w+)*(?:\+\+|#)?")
_WORD_BREAK = re.compile(r"[\W_]+")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_KEYWORD_BEFORE = re.compile(r"(?=\b([A-Za-z_]+)[ \t]+([A-Za-z_]+)\b)")
_QUOTED = re.compile(r"[`\"'“”‘’]([A-Za-z_]+)[`\"'“”‘’]")


def tokens(text: str) -> list[str]:
    """Return the tokens of `text` in order, casing kept: `json.loads` and `C++` are one each."""
    return TOKEN.findall(text)


def plain_words(text: str) -> list[str]:
    """Return the plain words of `text`, lowercased: tokens cut at dots, dashes and underscores.

    This is how SQLite's FTS5 (unicode61) reads text, so these are the words a search can find.
    """
    return [w for tok in tokens(text.lower()) for w in _WORD_BREAK.split(tok) if w]


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
    """Tell whether `token` is a function word or a request verb (case-insensitive)."""
    word = token.lower().replace("’", "'")
    return word in STOPWORDS or word in REQUEST_WORDS


def terms(text: str) -> list[str]:
    """Return the content terms of `text`: lowercased, stemmed, no function or request words.

    Compound tokens such as ``json.loads`` also contribute their parts, so a query for "loads"
    still matches them; Python keywords used as keywords and operator symbols count too.
    """
    out = keywords_in(text)  # "the with statement": "with" counts
    out += [stem(w) for w in operator_words(text)]  # "//" is "floor division" in the docs
    for tok in tokens(text):
        if is_stopword(tok):
            continue
        parts = [tok, *re.split(r"[.\-/]", tok)] if re.search(r"[.\-/]", tok) else [tok]
        out.extend(stem(part) for part in parts if len(part) > 1 and not is_stopword(part))
    return out


def key_terms(text: str) -> set[str]:
    """The terms that carry a text's topic: `terms` without generic words ("work", "python")."""
    return set(terms(text)) - GENERIC_STEMS


def sentences(text: str) -> list[str]:
    """Split `text` into sentences (each line separately); every one is a substring."""
    pieces: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if match.end() < len(line) and not line[match.end()].islower():
                pieces.append(line[start : match.end()])
                start = match.end()
        pieces.append(line[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


MARKER = r"\[(?:\d{1,3}|[^\[\]\s]{1,120}#\d+)\](?!\()"  # [3] or [stdlib:json#0]; not ['a']
"""A citation marker: a source's number in a report, or a passage id in a note."""
TRAILING_MARKERS = re.compile(rf"((?:\s*{MARKER})+)\s*$")
_CODE_HINTS = re.compile(
    r"^\s*(>>>|\.\.\.|\$ |#|[-=*~^]{3,})|::=|\b(?:def|class|import)\s+\w+.*:$"
    r"|(?:^|\s)\w+ = [\w.]+\("  # "x = copy.copy(y)": an assignment from a call is code
)
_HEADER_LINE = re.compile(r"^\s*\[[^\[\]\n]{1,80}\]\s+[^.!?]{1,120}\)\s*$")
_LINK = re.compile(r"<[^<>\s]+>|https?://\S+")  # a link is not words of the sentence
_INLINE_CODE = re.compile(r"\"[^\"\n]{1,80}\"|`[^`\n]{1,80}`")
PROSE_WORDS = (4, 70)


def is_prose(text: str) -> bool:
    """Tell whether a unit is a sentence a reader can use: not code, a rule, or a header line.

    Prose is six to seventy words (four if it ends with a period), mostly letters; a longer
    "sentence" is text the splitter could not cut (a listing, a session log). Inline code
    (`"s.append(x)"`, as the docs quote it) counts as one word.
    """
    if _CODE_HINTS.search(text) or _HEADER_LINE.match(text):
        return False
    bare = _INLINE_CODE.sub("code", _LINK.sub("", TRAILING_MARKERS.sub("", text)))
    found = tokens(bare)
    short = len(found) < 6 and not bare.rstrip().endswith(".")
    if short or not PROSE_WORDS[0] <= len(found) <= PROSE_WORDS[1]:
        return False  # "Start the thread's activity." is a sentence; "Simple JSON decoder" not
    letters = sum(c.isalpha() or c.isspace() for c in bare)
    if letters / max(1, len(bare)) < 0.75:
        return False
    parts = sentences(bare.replace(". ", ".\n"))  # "object: dict. array: list." is a table
    return len(parts) < 3 or len(found) / len(parts) >= 4


def keywords_in(text: str) -> list[str]:
    """Python keywords that `text` uses as keywords: quoted, or followed by "statement" etc."""
    found: list[str] = [w for w in _QUOTED.findall(text) if keyword.iskeyword(w)]
    for word, after in _KEYWORD_BEFORE.findall(text):  # "the // and % operators": not "and"
        if keyword.iskeyword(word.lower()) and after.lower() in KEYWORD_CONTEXT:
            found.append(word.lower())
    return list(dict.fromkeys(found))


OPERATOR_WORDS = {
    "==": "comparisons equal", "!=": "comparisons equal", "<=": "comparisons", ">=": "comparisons",
    "+": "addition __add__", "-": "subtraction __sub__", "*": "multiplication __mul__",
    "/": "division __truediv__", "//": "floor division __floordiv__", "%": "modulo __mod__",
    "**": "power __pow__", "@": "matrix multiplication __matmul__", "<<": "shifting",
    ">>": "shifting", "&": "bitwise", "|": "bitwise", "^": "bitwise", "~": "unary invert",
    ":=": "assignment expressions",
    **{f"{op}=": "augmented assignment" for op in "+ - * / // % ** @ & | ^ >> <<".split()},
}  # fmt: skip
"""How the language reference names an operator a question writes as a symbol ("the // and %
operators"), so the symbol, which no word index holds, still finds its section."""

_OPERATOR = re.compile(
    r"(?<![\w\S])(?:[`'\"]?)"
    r"((?:\*\*|//|<<|>>|[-+*/%@&|^])=|==|!=|<=|>=|//|\*\*|:=|<<|>>|[-+*/%@&|^~])"
    r"(?:[`'\"]?)(?![\w\S])"
)


def operator_words(text: str) -> list[str]:
    """The words for each operator symbol standing alone in `text` ("what + does" -> addition)."""
    words = (word for symbol in _OPERATOR.findall(text) for word in OPERATOR_WORDS[symbol].split())
    return list(dict.fromkeys(words))


GENERIC_STEMS = frozenset(stem(g) for g in HOW_TO_WORDS | {"python", "statement", "statements"})
"""Stems that say nothing about the topic of a question about Python's documentation."""
