"""The corpus search tool: what researchers search and cite from."""

from __future__ import annotations

import re

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from ensemble.corpus import CorpusIndex, Passage
from ensemble.corpus.sources import PARAGRAPH_BREAK

SEARCH_TOOL_NAME = "search_corpus"
PASSAGE_CHARS = 700


class SearchArgs(BaseModel):
    """Arguments of `search_corpus`."""

    query: str = Field(description="A short keyword query, e.g. 'json decoder errors'.")


_RULE = re.compile(r"[*=~^-]{4,}")
_HEADING = re.compile(r"^[ \t]*(\S[^\n]*?)[ \t]*\n[ \t]*[*=~^-]{4,}[ \t]*$", re.MULTILINE)
_FOOTNOTE_REF = re.compile(r"[ \t]*\[\d{1,3}\](?!\()")


def plain_text(text: str, title: str) -> str:
    """A passage as a model reads it: one line per paragraph, no layout.

    - A heading ends like a sentence ("Notes."), and the title's own heading goes, or it would
      run into the next sentence ("Numeric literals There are three types...").
    - Footnote references ("... with the object. [1]") go: the footnote is not shown, and a
      quoted "[1]" would read as a citation of the report's first source.
    - Paragraphs stay on lines of their own, so an example (`>>> mean(...)` and its output)
      is not glued to the sentence after it.
    """

    def heading(match: re.Match[str]) -> str:
        return "" if match.group(1) == title else f"{match.group(1).rstrip('.:')}."

    text = _RULE.sub(" ", _FOOTNOTE_REF.sub("", _HEADING.sub(heading, text)))
    paragraphs = (" ".join(p.split()) for p in PARAGRAPH_BREAK.split(text))
    return "\n".join(p for p in paragraphs if p)


def format_passages(passages: list[Passage]) -> str:
    """Render passages the way the model sees them: id in brackets, title, trimmed text."""
    if not passages:
        return "No passages found."
    blocks = []
    for p in passages:
        text = plain_text(p.text, p.title)
        if len(text) > PASSAGE_CHARS:
            text = text[:PASSAGE_CHARS].rsplit(" ", 1)[0] + " ..."
        blocks.append(f"[{p.id}] {p.title} ({p.source})\n{text}")
    return "\n\n".join(blocks)


def corpus_search_tool(index: CorpusIndex, k: int = 5) -> StructuredTool:
    """A LangChain tool searching `index`; its schema is what the model is asked to fill."""

    def search_corpus(query: str) -> str:
        """Search the document corpus (BM25) and return passages with their ids."""
        return format_passages(index.search(query, k=k))

    return StructuredTool.from_function(
        func=search_corpus,
        name=SEARCH_TOOL_NAME,
        description="Search the document corpus and return matching passages with their ids.",
        args_schema=SearchArgs,
    )
