"""A piece as files: Markdown with YAML front matter, and a standalone, inert HTML page.

Everything in a piece came from a model and the sources it read, so it is treated as untrusted
data: front-matter values are quoted by the YAML dumper, and the HTML body goes through a
Markdown renderer that does not pass raw HTML and then through an allow-list sanitiser.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

import nh3
import yaml
from markdown_it import MarkdownIt

from ensemble.publishing.piece import Piece

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"

ALLOWED_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "code", "pre"}
    | {"em", "strong", "a", "hr", "br", "table", "thead", "tbody", "tr", "th", "td"}
)
ALLOWED_ATTRIBUTES = {"a": frozenset({"href", "title"}), "ol": frozenset({"start"})}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Dropped with their content, not just unwrapped (their text is code or markup, not prose).
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "noscript", "template", "object", "textarea", "title"}
)

_CSS = """\
body { max-width: 42rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.6;
  font-family: system-ui, sans-serif; color: #1a1a1a; }
header p, footer { color: #555; font-size: 0.9rem; }
pre { overflow-x: auto; background: #f4f4f4; padding: 0.75rem; }
code { font-family: ui-monospace, monospace; }
blockquote { border-left: 3px solid #ccc; margin-left: 0; padding-left: 1rem; color: #444; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }
"""

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


class _FrontMatterDumper(yaml.SafeDumper):
    """Safe dumper that puts any string with a line break or control char in double quotes.

    Such a value then stays on one line, so no line of the front matter can read as a `---` or
    `...` fence, whatever a title contains.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(not ch.isprintable() for ch in value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_FrontMatterDumper.add_representer(str, _represent_str)


def front_matter(piece: Piece, published_at: str) -> dict[str, Any]:
    """The metadata recorded with a piece, in front-matter order."""
    return {
        "title": piece.title,
        "topic": piece.topic,
        "audience": piece.audience,
        "format": piece.format,
        "tone": piece.tone,
        "words": piece.word_count,
        "sources": [{"title": title, "location": where} for title, where in piece.sources],
        "thread": piece.thread_id,
        "approved_by": piece.approved_by,
        "published_at": published_at,
    }


_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
_IDENTIFIER = re.compile(r"(?<![\w`*])_{1,2}[A-Za-z]\w*?_{1,2}(?![\w`])(?:\(\))?")
"""`__enter__()`, `_private_`: Markdown would read their underscores as emphasis."""
_STARRED = re.compile(r"(?<=[(,] )\*{1,2}[A-Za-z_]\w*|(?<=\()\*{1,2}[A-Za-z_]\w*")
"""`*args`, `**kwargs` in a signature: Markdown would read the stars as emphasis."""
_UNSAFE_LINK = re.compile(r"\]\(\s*(?:javascript|vbscript|data|file):[^)]*\)", re.IGNORECASE)
"""A Markdown link target that would run or read something: it points nowhere instead."""
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
"""The start of raw HTML (`<script>`, `<img onerror=...>`): shown as text, never as markup."""


def code_as_code(markdown: str) -> str:
    """Make a body safe and exact as Markdown: code reads as code, raw HTML as text.

    Outside code blocks and code spans, identifiers whose underscores or stars Markdown would
    take for emphasis become code spans, the `<` that starts a tag becomes `&lt;` and a link to
    `javascript:` (or `data:`, `file:`) points nowhere, so any Markdown renderer (one that
    passes raw HTML included) shows what the sources wrote and runs none of it.
    """
    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and not line.startswith(("    ", "\t")):
            line = _inline_code(line)
        lines.append(line)
    return "".join(lines)


def _inline_code(line: str) -> str:
    out, last = [], 0
    for span in _CODE_SPAN.finditer(line):
        out.append(_prose(line[last : span.start()]))
        out.append(span.group(0))
        last = span.end()
    out.append(_prose(line[last:]))
    return "".join(out)


def _prose(text: str) -> str:
    text = _IDENTIFIER.sub(lambda m: f"`{m.group(0)}`", text)
    text = _STARRED.sub(lambda m: f"`{m.group(0)}`", text)
    text = _UNSAFE_LINK.sub("](#)", text)
    return _TAG.sub("&lt;", text)


def render_markdown(piece: Piece, published_at: str) -> str:
    """Return the Markdown file: `---`-fenced YAML front matter, then the body."""
    meta = yaml.dump(
        front_matter(piece, published_at),
        Dumper=_FrontMatterDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=2**31 - 1,  # never fold a value onto a second line
    )
    body = code_as_code(piece.body)
    body = body if body.endswith("\n") else body + "\n"
    return f"---\n{meta}---\n\n{body}"


def sanitize_html(fragment: str) -> str:
    """Keep only ordinary text markup: no scripts, handlers, styles, frames or odd URLs."""
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        clean_content_tags=_DROP_WITH_CONTENT,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_body(markdown: str) -> str:
    """Render Markdown (code as code, raw HTML shown as text) and sanitise the result."""
    return sanitize_html(_markdown.render(code_as_code(markdown)))


def render_html(piece: Piece, published_at: str) -> str:
    """Return a standalone HTML5 page for `piece` that runs and loads nothing."""
    details = " · ".join(
        part
        for part in (piece.format, piece.audience, f"{piece.word_count} words", published_at)
        if part
    )
    return render_page(piece.title, piece.body, details, _sources_html(piece.sources))


def render_page(title: str, markdown: str, details: str = "", footer: str = "") -> str:
    """A standalone, inert HTML5 page: `markdown` rendered and sanitised under a strict CSP.

    `footer` is HTML the caller built from escaped parts (a piece's sources).
    """
    esc = html.escape
    return (
        "<!DOCTYPE html>\n"
        "<html>\n<head>\n"
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CONTENT_SECURITY_POLICY)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>\n{_CSS}</style>\n"
        "</head>\n<body>\n<article>\n"
        f"<header>\n<h1>{esc(title)}</h1>\n<p>{esc(details)}</p>\n</header>\n"
        f"{render_body(markdown)}"
        f"{footer}"
        "</article>\n</body>\n</html>\n"
    )


def _sources_html(sources: tuple[tuple[str, str], ...]) -> str:
    if not sources:
        return ""
    items = []
    for title, location in sources:
        label = html.escape(title or location)
        if _is_web_url(location):
            href = html.escape(location, quote=True)
            item = f'<a href="{href}" rel="noopener noreferrer">{label}</a>'
        else:
            item = f"{label} <code>{html.escape(location)}</code>" if title else label
        items.append(f"<li>{item}</li>\n")
    return f"<footer>\n<h2>Sources</h2>\n<ol>\n{''.join(items)}</ol>\n</footer>\n"


def _is_web_url(location: str) -> bool:
    try:
        parts = urlsplit(location)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and not any(ch.isspace() or not ch.isprintable() for ch in location)
    )
