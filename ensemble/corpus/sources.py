"""Read documents for the corpus: Python's own reference docs, or a user's folder.

Everything here is pure reading and text shaping; the index module decides what to store. The
default corpus is read without importing any standard-library module (some act on import), so
docstrings come from `ast` over the source files.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import os
import platform
import re
import sysconfig
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from stat import S_ISREG

from ensemble.corpus.tables import flatten_tables

logger = logging.getLogger(__name__)

INDEXABLE_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".html", ".htm"})
"""File types a folder corpus reads; everything else in the folder is ignored."""

MAX_FILE_BYTES = 20_000_000
"""Larger files are skipped: they are almost never prose meant for citation."""

MIN_DOCSTRING_CHARS = 80
"""Shorter docstrings ("Return self.") add noise to search and nothing to answers."""

MIN_PASSAGE_CHARS = 400
MAX_PASSAGE_CHARS = 1200

_SKIPPED_STDLIB_DIRS = frozenset(
    {"site-packages", "test", "tests", "idle_test", "__pycache__", "__phello__", "_bundled"}
)


@dataclass(frozen=True)
class Document:
    """One unit of source text; its passages get ids `<doc_id>#<n>`.

    Attributes:
        doc_id: Stable id, also the passage id prefix (`pydoc:assert`, `stdlib:json.loads`,
            `file:notes/a.md`).
        title: What a reader would call it; weighted higher than text in search.
        source: Human-readable location shown with citations.
        text: The full text, whitespace-normalized, paragraphs separated by blank lines.
    """

    doc_id: str
    title: str
    source: str
    text: str


@dataclass(frozen=True)
class FolderFile:
    """A candidate file of a folder corpus with the stat data used to detect changes."""

    relpath: str
    path: Path
    size: int
    mtime_ns: int


# --------------------------------------------------------------------------- text shaping

_BLANK_RUNS = re.compile(r"\n{3,}")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def normalize_text(text: str) -> str:
    """Normalize newlines, tabs and trailing spaces while keeping paragraphs and indentation."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.expandtabs(4).rstrip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n").rstrip()


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    """Split an oversized paragraph at sentence ends, falling back to whitespace, then hard."""
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", max_chars // 2, max_chars)
            cut = cut if cut > 0 else max_chars
            head, sentence = sentence[:cut].rstrip(), sentence[cut:].lstrip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if not sentence:
            continue
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def chunk_text(
    text: str, min_chars: int = MIN_PASSAGE_CHARS, max_chars: int = MAX_PASSAGE_CHARS
) -> list[str]:
    """Split text into passages of roughly `min_chars`..`max_chars` at paragraph boundaries.

    Small paragraphs are merged so a passage carries enough context to cite; huge ones are
    split at sentence ends. The result is deterministic, which keeps passage ids stable.
    """
    text = normalize_text(text)
    if not text:
        return []
    pieces: list[str] = []
    for paragraph in PARAGRAPH_BREAK.split(text):
        if not paragraph.strip():
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
        else:
            pieces.extend(_split_long(paragraph, max_chars))
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) < min_chars and len(current) + 2 + len(piece) <= max_chars:
            current = f"{current}\n\n{piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        if chunks and len(current) < min_chars and len(chunks[-1]) + 2 + len(current) <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{current}"
        else:
            chunks.append(current)
    return chunks


# --------------------------------------------------------------------------- default corpus


CORPUS_REVISION = 3
"""Bumped when the default corpus is read differently (2: pydoc topics titled by heading;
3: grid tables in topics and docstrings read as one line per row), so a database built by an
older Ensemble re-indexes it once."""

HEADING_RULE = re.compile(r"^\s*([*=\-~^]{3,})\s*$")


def python_corpus_key() -> str:
    """Key of the default corpus: its content is fixed for a given Python version."""
    return f"python-{platform.python_version()}-r{CORPUS_REVISION}"


def topic_heading(text: str) -> str:
    """The heading of a pydoc topic (the line over its `****` rule), e.g. 'The "with" statement'.

    Topic keys such as `with` or `context-managers` are what `help()` takes, not what a reader
    calls the section; the heading is, and it carries the words people search for.
    """
    lines = [line.strip() for line in text.splitlines()[:4]]
    for first, second in zip(lines, lines[1:], strict=False):
        if first and HEADING_RULE.match(second):
            return first
    return ""


@functools.cache
def _pydoc_topics() -> dict[str, str]:
    """The topics `help()` shows (`pydoc_data.topics`); none in stripped-down Python builds."""
    try:
        return importlib.import_module("pydoc_data.topics").topics  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        logger.warning("pydoc_data.topics is not available; default corpus has no topics")
        return {}


@functools.cache
def pydoc_chapters() -> frozenset[str]:
    """The pydoc topics that repeat two or more other topics whole (`compound`, `specialnames`).

    "Compound statements" holds the `with`, `try` and `for` topics word for word; the dedicated
    topic is the same text under a title that says what it is about, so it should rank first.
    """
    topics = _pydoc_topics()
    flat = {name: " ".join(text.split()) for name, text in topics.items()}
    openings = {  # a topic's first paragraph after its heading, where it is long enough to tell
        name: " ".join(text.strip().split("\n\n", 2)[-1].split())[:150]
        for name, text in topics.items()
        if len(flat[name]) > 200
    }
    return frozenset(
        name
        for name, text in flat.items()
        if sum(other != name and opening in text for other, opening in openings.items()) >= 2
    )


def iter_pydoc_topics() -> Iterator[Document]:
    """Yield the language-reference topics that `help()` shows (`pydoc_data.topics`)."""
    topics = _pydoc_topics()
    for name in sorted(topics):
        text = normalize_text(flatten_tables(topics[name]))
        if text:
            title = topic_heading(text) or name
            yield Document(f"pydoc:{name}", title, f"Python language reference: {name}", text)


def _module_name(relpath: Path) -> str | None:
    parts = list(relpath.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def _defs(body: list[ast.stmt]) -> Iterator[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Yield definitions in a body, looking into if/try/with blocks but not into functions."""
    for stmt in body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield stmt
        elif isinstance(stmt, ast.If | ast.Try | ast.TryStar | ast.With | ast.For | ast.While):
            for field in ("body", "orelse", "finalbody"):
                yield from _defs(getattr(stmt, field, []) or [])
            for handler in getattr(stmt, "handlers", []) or []:
                yield from _defs(handler.body)


def _module_docstrings(module: str, tree: ast.Module, min_chars: int) -> Iterator[Document]:
    seen: set[str] = set()

    def emit(qualname: str, node: ast.AST) -> Iterator[Document]:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if not doc or len(doc) <= min_chars or qualname in seen:
            return
        seen.add(qualname)
        text = normalize_text(flatten_tables(doc))
        if text:
            yield Document(f"stdlib:{qualname}", qualname, module, text)

    def walk(prefix: str, body: list[ast.stmt]) -> Iterator[Document]:
        for node in _defs(body):
            qualname = f"{prefix}.{node.name}"
            yield from emit(qualname, node)
            if isinstance(node, ast.ClassDef):
                yield from walk(qualname, node.body)

    yield from emit(module, tree)
    yield from walk(module, tree.body)


def iter_stdlib_docstrings(
    stdlib_dir: str | os.PathLike[str] | None = None, min_chars: int = MIN_DOCSTRING_CHARS
) -> Iterator[Document]:
    """Yield module, class and function docstrings of the standard library, read with `ast`.

    Test packages, `site-packages` and files that do not parse are skipped. Nothing is
    imported: `antigravity` would open a browser and `this` would print.
    """
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        logger.warning("standard library sources not found at %s", root)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIPPED_STDLIB_DIRS and d.isidentifier()
        )
        for filename in sorted(filenames):
            if not filename.endswith(".py") or filename.startswith("test_"):
                continue
            path = Path(dirpath, filename)
            module = _module_name(path.relative_to(root))
            if module is None:
                continue
            try:
                source = path.read_bytes()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(source, filename=str(path))
            except (OSError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                logger.debug("skipping %s: %s", path, exc)
                continue
            yield from _module_docstrings(module, tree, min_chars)


def iter_default_documents() -> Iterator[Document]:
    """Yield the default corpus: pydoc topics, then standard-library docstrings."""
    yield from iter_pydoc_topics()
    yield from iter_stdlib_docstrings()


# --------------------------------------------------------------------------- folder corpus


class _HTMLText(HTMLParser):
    """Collect visible text of an HTML page, with paragraph breaks at block elements."""

    _BLOCKS = frozenset(
        "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 "
        "h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split()
    )
    _HIDDEN = frozenset({"script", "style", "template", "noscript", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.heading = ""
        self._hidden = 0
        self._in_title = False
        self._heading_tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._HIDDEN:
            self._hidden += 1
        if tag in self._BLOCKS:
            self.parts.append("\n\n")
        if tag in {"h1", "h2", "h3"} and not self.heading and self._heading_tag is None:
            self._heading_tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        if tag in self._BLOCKS:
            self.parts.append("\n\n")
        if tag == self._heading_tag:
            self._heading_tag = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            if self._heading_tag is not None:
                self.heading += data
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """Return `(title, text)` of an HTML page; scripts and styles are dropped.

    Whitespace inside a block is collapsed (HTML rendering ignores it), blocks become
    paragraphs.
    """
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:  # noqa: BLE001 - a broken page should still yield its text so far
        logger.debug("HTML parse error: %s", exc)
    raw = "".join(parser.parts)
    paragraphs = (" ".join(block.split()) for block in re.split(r"\n\s*\n", raw))
    text = "\n\n".join(p for p in paragraphs if p)
    title = " ".join(parser.title.split()) or " ".join(parser.heading.split())
    return title, text


_MD_ATX = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")


def _first_heading(text: str, suffix: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if suffix in {".md", ".markdown"} and (match := _MD_ATX.match(line)):
            return match.group(1).strip()
        if suffix in {".md", ".markdown", ".rst"} and line.strip() and i + 1 < len(lines):
            if _UNDERLINE.match(lines[i + 1]) and not _UNDERLINE.match(line):
                return line.strip()
    return ""


def document_from_bytes(relpath: str, data: bytes) -> Document:
    """Turn a folder file's bytes into a document with a title from its first heading."""
    suffix = Path(relpath).suffix.lower()
    content = data.decode("utf-8-sig", errors="replace")
    if suffix in {".html", ".htm"}:
        title, text = html_to_text(content)
    else:
        text = normalize_text(content)
        title = _first_heading(text, suffix)
    return Document(f"file:{relpath}", title or Path(relpath).stem, relpath, normalize_text(text))


def scan_folder(root: Path) -> list[FolderFile]:
    """List indexable files under `root`, sorted, skipping hidden files and folders.

    Only regular files inside `root` count: a symlink whose target lies outside the folder, a
    device, a FIFO or a socket is skipped, so naming a folder never reads anything beyond it.
    Symlinked folders are not entered (`os.walk` does not follow them).
    """
    found: list[FolderFile] = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for filename in sorted(filenames):
            if filename.startswith(".") or Path(filename).suffix.lower() not in INDEXABLE_SUFFIXES:
                continue
            path = Path(dirpath, filename)
            try:
                if path.is_symlink() and not path.resolve(strict=True).is_relative_to(real_root):
                    logger.warning("skipping %s: a symlink that leaves the corpus folder", path)
                    continue
                stat = path.stat()
            except (OSError, RuntimeError) as exc:
                logger.warning("skipping unreadable file %s: %s", path, exc)
                continue
            if not S_ISREG(stat.st_mode):
                logger.warning("skipping %s: not a regular file", path)
                continue
            if stat.st_size > MAX_FILE_BYTES:
                logger.warning("skipping %s: larger than %d bytes", path, MAX_FILE_BYTES)
                continue
            relpath = path.relative_to(root).as_posix()
            found.append(FolderFile(relpath, path, stat.st_size, stat.st_mtime_ns))
    return found
