"""Publishing approved pieces: Markdown and HTML files in a chosen folder, exactly once.

`publish` writes `<slug>.md` (YAML front matter + body) and `<slug>.html` (a standalone,
sanitised page) into an existing folder, recording each publication in a journal in the
project's SQLite database so crashes, resumes and replays neither duplicate nor overwrite.
"""

from ensemble.publishing.errors import PublishError, SlugTakenError
from ensemble.publishing.journal import Entry, PublishJournal
from ensemble.publishing.piece import FORMATS, Piece
from ensemble.publishing.publisher import PublishResult, publish, resolve_out_dir
from ensemble.publishing.render import render_body, render_html, render_markdown, sanitize_html
from ensemble.publishing.slug import check_name, slugify

__all__ = [
    "FORMATS",
    "Entry",
    "Piece",
    "PublishError",
    "PublishJournal",
    "PublishResult",
    "SlugTakenError",
    "check_name",
    "publish",
    "render_body",
    "render_html",
    "render_markdown",
    "resolve_out_dir",
    "sanitize_html",
    "slugify",
]
