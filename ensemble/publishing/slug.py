"""File names from titles: short, lowercase ASCII, and safe on every filesystem."""

from __future__ import annotations

import re
import unicodedata

from ensemble.publishing.errors import PublishError

MAX_SLUG_CHARS = 80
FALLBACK = "piece"

# Letters NFKD does not decompose into ASCII.
_TRANSLITERATE = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d",
     "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"}
)  # fmt: skip
_APOSTROPHES = re.compile(r"['’`]")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_SAFE_STEM = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{n}" for n in range(1, 10)}
    | {f"lpt{n}" for n in range(1, 10)}
)


def slugify(title: str) -> str:
    """Turn a title into a file stem: `[a-z0-9-]`, at most 80 chars, never empty or reserved.

    Anything path-like in a title (slashes, `..`) becomes a dash, so a slug never names
    another folder.
    """
    text = unicodedata.normalize("NFKD", title.translate(_TRANSLITERATE))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    text = _NOT_SLUG.sub("-", _APOSTROPHES.sub("", text)).strip("-")
    slug = _truncate(text, MAX_SLUG_CHARS) or FALLBACK
    return f"{slug}-{FALLBACK}" if slug in _RESERVED else slug


def with_suffix(slug: str, number: int) -> str:
    """Return `slug-<number>`, shortening `slug` so the result keeps within 80 chars."""
    suffix = f"-{number}"
    return _truncate(slug, MAX_SLUG_CHARS - len(suffix)) + suffix


def check_name(name: str) -> None:
    """Raise `PublishError` unless `name` is a plain, safe file stem (a second check)."""
    if (
        not isinstance(name, str)
        or len(name) > MAX_SLUG_CHARS
        or not _SAFE_STEM.fullmatch(name)
        or name in _RESERVED
    ):
        raise PublishError(f"refusing unsafe file name {repr(name)[:100]}")


def _truncate(text: str, limit: int) -> str:
    """Cut `text` to `limit` chars at a dash when there is one, so words stay whole."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if text[limit] != "-" and "-" in cut:
        cut = cut[: cut.rindex("-")]
    return cut.strip("-")
