"""Fill any JSON schema with values quoted from a prompt: the offline model's "reasoning".

Structured-output and tool-call answers must validate against schemas never seen before, so
`SchemaFiller` walks the schema generically and quotes every free-text string from the prompt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

from ensemble.offline.extractive import (
    Unit,
    is_question,
    key_phrases,
    near_duplicate,
    score_units,
)
from ensemble.offline.questions import plan_questions
from ensemble.text import sentences, terms

DEFAULT_MAX_ITEMS = 5
MAX_DEPTH = 12
FALLBACK_TEXT = "offline"
_QUERY_KEY = re.compile(r"quer|search|keyword", re.IGNORECASE)
_QUESTION_KEY = re.compile(r"question", re.IGNORECASE)
_URL_KEY = re.compile(r"(^|_)(url|uri|link|href)s?($|_)", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
_SHAPE_KEYS = frozenset(
    {"type", "properties", "items", "prefixItems", "enum", "const", "anyOf", "oneOf", "$ref"}
)
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "duration": "PT0S",
    "email": "offline@example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "localhost",
}
"""Formats no prompt text can satisfy reliably get a fixed, obviously neutral value."""


@dataclass
class FillContext:
    """What the filler may quote: the request, the context's units, and which are its own."""

    request: str
    units: list[Unit] = field(default_factory=list)
    own: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Derive phrases, sentences and the focus pool once."""
        said = sentences(self.request)
        # A line ending in a colon introduces what follows ("Titles of the best matching
        # passages:"); it is scaffolding of the request, not something the request says.
        self.request_sentences = (
            [t for t in said if not t.rstrip().endswith(":")] or said or [FALLBACK_TEXT]
        )
        self.phrases = key_phrases(self.request) or [self.request_sentences[0]]
        request_terms = set(terms(self.request))
        related = [
            phrase
            for unit, own in zip(self.units, self.own, strict=False)
            if not own
            for phrase in key_phrases(unit.text)
            if set(terms(phrase)) & request_terms
        ]
        self.pool = _focus_pool(self.phrases, self.request_sentences, related)
        self.urls = _URL.findall("\n".join([self.request, *(u.text for u in self.units)]))

    def focus(self, index: int) -> str:
        """Return focus text `index` of the pool; beyond it, joined entries so they still differ."""
        size = len(self.pool)
        if index < size:
            return self.pool[index]
        start, extra = index % size, index // size
        return " ".join(self.pool[(start + m) % size] for m in range(extra + 1))

    def sentence_for(self, text: str) -> str:
        """Return the request sentence mentioning `text` (or a phrase of it), else the first."""
        needles = [text, *(p for p in self.phrases if p.lower() in text.lower())]
        for needle in needles:
            for sentence in self.request_sentences:
                if needle.lower() in sentence.lower():
                    return sentence
        return self.request_sentences[0]


def _focus_pool(
    phrases: Sequence[str], request_sentences: Sequence[str], related: Sequence[str]
) -> list[str]:
    """Key phrases, request sentences, words of long phrases, related context phrases."""
    words = [w for p in phrases if len(p.split()) > 1 for w in p.split()]
    pool: dict[str, str] = {}
    for item in [*phrases, *request_sentences, *words, *related]:
        pool.setdefault(item.lower(), item)
    return list(pool.values())


class SchemaFiller:
    """Produce a deterministic value for a JSON schema, quoting strings from a context.

    Rules (see `fill`): objects get all their properties; arrays get one item per key
    phrase of the request, clamped to minItems/maxItems (at most 5 without maxItems);
    item i focuses on key phrase i. Inside such an item the first free-text string is
    the focus phrase and later ones the request sentence containing it. Strings outside
    items are the context sentence best matching the request (and the field's name and
    description), each field preferring a sentence not used yet. Fields named like
    query/search/keywords get the key phrases joined by spaces.
    """

    def __init__(self, context: FillContext) -> None:
        """Bind the filler to one prompt; a filler instance serves one answer."""
        self.ctx = context
        self._root: dict[str, Any] = {}
        self._used: set[int] = set()
        self._questions: list[str] = []

    def fill(self, schema: dict[str, Any]) -> Any:
        """Return a value for `schema` (the root; its $defs/definitions resolve $refs)."""
        self._root = schema
        return self._value(schema, key="", focus=None, first_text=True, depth=0)

    # -- schema plumbing -------------------------------------------------------------

    def _resolve(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        """Follow $ref and merge allOf so the caller sees one plain schema dict."""
        if not isinstance(schema, dict):
            return {}
        result = dict(schema)
        ref = result.pop("$ref", None)
        if isinstance(ref, str) and depth < MAX_DEPTH:
            result = {**self._resolve(self._lookup(ref), depth + 1), **result}
        for part in result.pop("allOf", None) or []:
            result = {**self._resolve(part, depth + 1), **result}
        return result

    def _lookup(self, ref: str) -> Any:
        """Return the schema a local JSON pointer (``#/$defs/Name``) points at."""
        node: Any = self._root
        for part in filter(None, ref.lstrip("#").strip("/").split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node

    def _choose(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """Collapse anyOf/oneOf to one branch: the first non-null (null when too deep)."""
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if not options:
                continue
            outer = {k: v for k, v in schema.items() if k != key}
            resolved = [self._resolve(o) for o in options]
            non_null = [o for o in resolved if _type_of(o) != "null"]
            known = [o for o in non_null if not _unknown(o)]
            has_null = len(non_null) < len(resolved)
            if not non_null or (has_null and (not known or depth > MAX_DEPTH // 2)):
                return {"type": "null"}
            return self._choose({**outer, **(known or non_null)[0]}, depth)
        return schema

    def _text_like(self, schema: Any, key: str, depth: int) -> bool:
        """Tell whether a property is free text (a plain string, not enum/format/query)."""
        s = self._choose(self._resolve(schema), depth)
        return (
            _type_of(s) == "string"
            and not {"enum", "const", "format"} & set(s)
            and not _QUERY_KEY.search(key)
        )

    # -- values ----------------------------------------------------------------------

    def _value(
        self, schema: Any, *, key: str, focus: int | None, first_text: bool, depth: int
    ) -> Any:
        s = self._choose(self._resolve(schema), depth)
        if "const" in s:
            return s["const"]
        if s.get("enum"):
            return s["default"] if s.get("default") in s["enum"] else s["enum"][0]
        kind = _type_of(s)
        if kind == "object":
            return self._object(s, focus, depth)
        if kind == "array":
            return self._array(s, key, focus, depth)
        if kind == "boolean":
            return s["default"] if isinstance(s.get("default"), bool) else True
        if kind in ("integer", "number"):
            return _number(s, integer=kind == "integer")
        if kind == "null":
            return None
        return self._string(s, key, focus, first_text)

    def _object(self, s: dict[str, Any], focus: int | None, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if depth > MAX_DEPTH:
            return out
        first_text = True
        for name, prop in (s.get("properties") or {}).items():
            out[name] = self._value(
                prop, key=name, focus=focus, first_text=first_text, depth=depth + 1
            )
            first_text = first_text and not self._text_like(prop, name, depth + 1)
        return out

    def _array(self, s: dict[str, Any], key: str, focus: int | None, depth: int) -> list[Any]:
        if isinstance(s.get("prefixItems"), list):
            return [
                self._value(item, key=key, focus=focus, first_text=True, depth=depth + 1)
                for item in s["prefixItems"]
            ]
        low = int(s.get("minItems") or 0)
        high = s.get("maxItems")
        high = max(low, DEFAULT_MAX_ITEMS) if high is None else int(high)
        items = self._choose(self._resolve(s.get("items", {})), depth + 1)
        if depth > MAX_DEPTH // 2 or _unknown(items):
            count = low
        elif self._asks_questions(s, items, key):
            self._questions = plan_questions(self.ctx.request, max(high, 1))
            count = max(low, min(len(self._questions), high))
            if self._questions and _type_of(items) == "string":
                return [self._fit(q, items) for q in islice(cycle(self._questions), count)]
        else:
            count = min(max(len(self.ctx.phrases), low), high)
        offset = focus or 0
        if items.get("enum"):
            options = items["enum"]
            if s.get("uniqueItems"):
                count = max(low, min(count, len(options)))
            return [options[(offset + i) % len(options)] for i in range(count)]
        values = [
            self._value(items, key=key, focus=offset + i, first_text=True, depth=depth + 1)
            for i in range(count)
        ]
        if s.get("uniqueItems"):
            values = _make_unique(values)
        return values

    def _asks_questions(self, array: dict[str, Any], items: dict[str, Any], key: str) -> bool:
        """An array of questions: its name or description, or its items' fields, say so."""
        said = f"{key} {array.get('description', '')}"
        if _type_of(items) == "string":
            return bool(_QUESTION_KEY.search(said))
        props = items.get("properties") or {}
        return _type_of(items) == "object" and any(_QUESTION_KEY.search(k) for k in props)

    def _string(self, s: dict[str, Any], key: str, focus: int | None, first_text: bool) -> str:
        if (
            focus is not None
            and self._questions
            and (_QUESTION_KEY.search(key) or _type_of(s) == "string" and first_text and not key)
        ):
            return self._fit(self._questions[focus % len(self._questions)], s)
        fmt = s.get("format")
        if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            return self.ctx.urls[0] if self.ctx.urls else "https://example.com/"
        if _URL_KEY.search(key) and self.ctx.urls:
            return self.ctx.urls[0]
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        if _QUERY_KEY.search(key):
            text = self.ctx.focus(focus) if focus is not None else " ".join(self.ctx.phrases)
        elif focus is not None:
            item = self.ctx.focus(focus)
            text = item if first_text else self.ctx.sentence_for(item)
        else:
            text = self._best_span(f"{key.replace('_', ' ')} {s.get('description', '')}")
        return self._fit(text, s)

    def _best_span(self, hint: str) -> str:
        """Return the context unit best matching the request, preferring unused ones."""
        units, request = self.ctx.units, self.ctx.request
        candidates = [
            i
            for i, u in enumerate(units)
            if not is_question(u.text) and not near_duplicate(u.text, request)
        ]
        scores = score_units(
            [units[i].text for i in candidates],
            request,
            own=[self.ctx.own[i] for i in candidates],
            hint=hint,
        )
        ranked = sorted(
            (pos for pos, score in enumerate(scores) if score > 0),
            key=lambda pos: (-scores[pos], pos),
        )
        if not ranked:
            return self.ctx.request_sentences[0]
        fresh = [pos for pos in ranked if candidates[pos] not in self._used]
        index = candidates[(fresh or ranked)[0]]
        self._used.add(index)
        return units[index].render()

    def _fit(self, text: str, s: dict[str, Any]) -> str:
        """Meet minLength by appending more quoted spans, maxLength by cutting at a word."""
        low = int(s.get("minLength") or 0)
        high = s.get("maxLength")
        if len(text) < low:
            extras = [*self.ctx.request_sentences, *(u.text for u in self.ctx.units)]
            more = cycle([e for e in extras if e.strip()] or [FALLBACK_TEXT])
            parts = [text] if text else []
            while len(" ".join(parts)) < low:
                parts.append(next(more))
            text = " ".join(parts)
        if high is not None and len(text) > int(high):
            text = _truncate(text, int(high), low)
        return text


def _unknown(schema: dict[str, Any]) -> bool:
    """Tell whether a schema says nothing about its value (e.g. a dropped recursive $ref).

    Such values are avoided (null branch, fewest items) rather than guessed at.
    """
    return not _SHAPE_KEYS & set(schema)


def _type_of(schema: dict[str, Any]) -> str:
    """Return the schema's single type; a type list gives its first non-null member."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _number(s: dict[str, Any], *, integer: bool) -> int | float:
    """Default if given, else the lower bound or 0, moved into the allowed range."""
    lower, lower_open = _bound(s, "minimum", "exclusiveMinimum", lower=True)
    upper, upper_open = _bound(s, "maximum", "exclusiveMaximum", lower=False)

    def allowed(v: float) -> bool:
        above = lower is None or v > lower or (v == lower and not lower_open)
        below = upper is None or v < upper or (v == upper and not upper_open)
        return above and below

    default = s.get("default")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        value: float = default
    else:
        value = lower if lower is not None else 0
    if lower is not None and not allowed(value) and value <= lower:
        value = lower + (1 if lower_open else 0)
    if upper is not None and not allowed(value) and value >= upper:
        value = upper - (1 if upper_open else 0)
    if not allowed(value) and lower is not None and upper is not None:
        value = (lower + upper) / 2
    multiple = s.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0:
        steps = (math.ceil(value / multiple), math.floor(value / multiple))
        value = next((k * multiple for k in steps if allowed(k * multiple)), value)
    if integer:
        return int(next((v for v in (math.ceil(value), math.floor(value)) if allowed(v)), value))
    return float(value)


def _bound(
    s: dict[str, Any], inclusive_key: str, exclusive_key: str, *, lower: bool
) -> tuple[float | None, bool]:
    """Return the tighter of an inclusive and an exclusive bound, and if it is open."""
    inclusive, exclusive = s.get(inclusive_key), s.get(exclusive_key)
    if isinstance(exclusive, bool):  # draft-4: a flag on the inclusive keyword
        return inclusive, exclusive and inclusive is not None
    if exclusive is None:
        return inclusive, False
    if inclusive is None:
        return exclusive, True
    tighter = exclusive >= inclusive if lower else exclusive <= inclusive
    return (exclusive, True) if tighter else (inclusive, False)


def _truncate(text: str, high: int, low: int) -> str:
    """Cut `text` to at most `high` chars, at the last word boundary that keeps `low`."""
    cut = text[:high]
    if high < len(text) and not text[high].isspace():
        space = cut.rfind(" ")
        if space > 0 and len(cut[:space].rstrip()) >= low:
            cut = cut[:space]
    trimmed = cut.rstrip(" ,;:")
    return trimmed if len(trimmed) >= low and trimmed else cut


def _make_unique(values: list[Any]) -> list[Any]:
    """Number repeated strings (``x (2)``) so a uniqueItems array validates."""
    seen: set[str] = set()
    out: list[Any] = []
    for i, value in enumerate(values):
        if isinstance(value, str) and repr(value) in seen:
            value = f"{value} ({i + 1})"
        seen.add(repr(value))
        out.append(value)
    return out
