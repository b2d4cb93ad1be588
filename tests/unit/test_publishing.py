"""The publisher: safe names, inert output, idempotent writes that stay inside the folder."""

from __future__ import annotations

import os
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from ensemble.errors import EnsembleError
from ensemble.publishing import (
    Piece,
    PublishError,
    PublishJournal,
    SlugTakenError,
    check_name,
    publish,
    render_html,
    render_markdown,
    sanitize_html,
    slugify,
)
from ensemble.publishing import publisher as publisher_module

WHEN = "2025-01-02T03:04:05+00:00"


def make_piece(**changes: object) -> Piece:
    fields: dict[str, object] = {
        "title": "Why Bees Dance",
        "body": "# Why bees dance\n\nBees *dance* to share [food](https://example.org/food).\n",
        "topic": "bees",
        "audience": "curious adults",
        "format": "blog",
        "tone": "warm",
        "sources": (("Bee book", "https://example.org/bees"), ("Notes", "corpus/notes.md#p3")),
        "thread_id": "thread-1",
        "approved_by": "human",
    }
    fields.update(changes)
    return Piece(**fields)  # type: ignore[arg-type]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder.resolve()


@pytest.fixture
def journal(tmp_path: Path) -> PublishJournal:
    return PublishJournal(tmp_path / "ensemble.db")


class Crash(Exception):
    """Stands in for the process dying at a given point."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def split_front_matter(text: str) -> tuple[dict, str]:
    lines = text.split("\n")
    assert lines[0] == "---"
    end = lines.index("---", 1)  # the first fence line closes it, as naive parsers do
    return yaml.safe_load("\n".join(lines[1:end])), "\n".join(lines[end + 1 :])


class ActiveContent(HTMLParser):
    """Collects anything in a page that could run, load or navigate to script."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.problems: list[str] = []
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "body":
            self.in_body = True
        if tag in {"script", "iframe", "object", "embed", "img", "svg", "form", "base", "link"}:
            self.problems.append(f"<{tag}>")
        if tag == "style" and self.in_body:
            self.problems.append("<style> in body")
        if tag == "meta" and self.in_body:
            self.problems.append("<meta> in body")
        for name, value in attrs:
            if name.startswith("on") or name in {"style", "srcdoc", "formaction"}:
                self.problems.append(f"{tag}[{name}]")
            if name in {"href", "src"} and value is not None:
                scheme = value.strip().lower().split(":", 1)[0]
                if ":" in value and scheme not in {"http", "https", "mailto"}:
                    self.problems.append(f"{tag}[{name}={value}]")


def active_content(page: str) -> list[str]:
    parser = ActiveContent()
    parser.feed(page)
    parser.close()
    return parser.problems


# --- slugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Why Bees Dance", "why-bees-dance"),
        ("Crème brûlée: a how-to!", "creme-brulee-a-how-to"),
        ("Straße & Smørrebrød", "strasse-smorrebrod"),
        ("Don't panic — it's fine", "dont-panic-its-fine"),
        ("  --Hello,   World!!--  ", "hello-world"),
        ("../../etc/passwd", "etc-passwd"),
        ("..\\..\\Windows\\System32", "windows-system32"),
        ("/absolute/path.md", "absolute-path-md"),
        ("", "piece"),
        ("   ", "piece"),
        ("...", "piece"),
        ("蜜蜂为什么跳舞", "piece"),
        ("CON", "con-piece"),
        ("nul", "nul-piece"),
        ("Com1", "com1-piece"),
        ("LPT9", "lpt9-piece"),
        ("com10", "com10"),
        (".hidden", "hidden"),
        ("a\x00b\nc", "a-b-c"),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug
    check_name(slug)


def test_slugify_cuts_long_titles_at_a_dash() -> None:
    title = " ".join(["pollination"] * 20)
    slug = slugify(title)
    assert len(slug) <= 80
    assert slug.endswith("pollination")  # cut between words, not inside one
    assert len(slugify("x" * 500)) == 80


@pytest.mark.parametrize(
    "name",
    ["", "..", ".", "a/b", "a\\b", ".hidden", "UPPER", "con", "aux", "a--b", "-a", "a-", "é", "a b"]
    + ["x" * 81, "a.md", "a\x00"],
)
def test_check_name_refuses_unsafe_stems(name: str) -> None:
    with pytest.raises(PublishError):
        check_name(name)


def test_publish_error_is_a_user_facing_error() -> None:
    assert issubclass(PublishError, EnsembleError)
    assert issubclass(SlugTakenError, PublishError)


# --- the piece -----------------------------------------------------------------------------


def test_piece_word_count_and_draft_key() -> None:
    piece = make_piece(body="# Title\n\n- one *two*\n- three-four don't\n")
    assert piece.word_count == 5
    assert piece.draft_key() == make_piece(body=piece.body, thread_id="other").draft_key()
    assert piece.draft_key() != make_piece(body=piece.body + "x").draft_key()
    assert (
        make_piece(title="ab", body="c").draft_key() != make_piece(title="a", body="bc").draft_key()
    )


def test_piece_checks_format_and_sources() -> None:
    with pytest.raises(PublishError, match="format"):
        make_piece(format="tweet")
    assert make_piece(sources=[["t", "u"]]).sources == (("t", "u"),)
    with pytest.raises(PublishError, match="sources"):
        make_piece(sources=(("only-title",),))


# --- markdown ------------------------------------------------------------------------------


def test_markdown_has_front_matter_then_body() -> None:
    piece = make_piece()
    meta, body = split_front_matter(render_markdown(piece, WHEN))
    assert meta == {
        "title": "Why Bees Dance",
        "topic": "bees",
        "audience": "curious adults",
        "format": "blog",
        "tone": "warm",
        "words": piece.word_count,
        "sources": [
            {"title": "Bee book", "location": "https://example.org/bees"},
            {"title": "Notes", "location": "corpus/notes.md#p3"},
        ],
        "thread": "thread-1",
        "approved_by": "human",
        "published_at": WHEN,
    }
    assert body.strip() == piece.body.strip()


@pytest.mark.parametrize(
    "title",
    [
        "Bees\n---\nevil: true",
        "---",
        "...",
        "a\r\n---\r\nb",
        "x\u2028---",
        "title: injected\nwords: 0",
        "yes",
        "null",
        "'quoted' \"both\" # comment",
        "- list\n- item",
        "{flow: map}",
        "&anchor *alias !!python/object:os.system",
    ],
)
def test_front_matter_values_cannot_break_out(title: str) -> None:
    piece = make_piece(title=title, topic=title, sources=((title, title),))
    text = render_markdown(piece, WHEN)
    meta, body = split_front_matter(text)
    assert meta["title"] == title
    assert meta["topic"] == title
    assert meta["sources"] == [{"title": title, "location": title}]
    assert meta["words"] == piece.word_count
    assert body.strip() == piece.body.strip()
    head = text.split("\n---\n", 1)[0].split("\n")[1:]
    keys = [line.split(":", 1)[0] for line in head if not line.startswith((" ", "-"))]
    assert keys == list(meta)  # no line reads as a key of its own, or as a fence
    assert all(line.strip() not in {"---", "..."} for line in head)


# --- html ----------------------------------------------------------------------------------


def test_html_page_is_standalone_and_complete() -> None:
    page = render_html(make_piece(), WHEN)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;; '
        'style-src &#x27;unsafe-inline&#x27;; img-src &#x27;self&#x27; data:">' in page
    )
    assert "<title>Why Bees Dance</title>" in page
    assert "<em>dance</em>" in page
    assert '<a href="https://example.org/food" rel="noopener noreferrer">food</a>' in page
    assert '<a href="https://example.org/bees" rel="noopener noreferrer">Bee book</a>' in page
    assert "corpus/notes.md#p3" in page
    assert active_content(page) == []


def test_csp_meta_is_parsed_as_intended() -> None:
    class Meta(HTMLParser):
        csp: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            if tag == "meta" and found.get("http-equiv") == "Content-Security-Policy":
                self.csp = found["content"]

    parser = Meta()
    parser.feed(render_html(make_piece(), WHEN))
    assert parser.csp == "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        "Hello <script>alert(1)</script> world",
        '<img src="x" onerror="alert(1)">',
        "<p onclick=alert(1)>click</p>",
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](  javascript:alert(1) )",
        "[click](java&#115;cript:alert(1))",
        "[data](data:text/html;base64,PHNjcmlwdD4=)",
        "![img](javascript:alert(1))",
        '<iframe src="https://evil.example"></iframe>',
        "<style>body{display:none}</style>",
        '<a href="javascript:alert(1)">x</a>',
        "<svg onload=alert(1)>",
        "<!-- comment --><base href='https://evil.example/'>",
        '<form action="https://evil.example"><input name=x></form>',
        "```html\n<script>alert(1)</script>\n```",
    ],
)
def test_html_body_is_inert(body: str) -> None:
    page = render_html(make_piece(body=body), WHEN)
    assert active_content(page) == []
    assert "<script" not in page.lower()
    assert "<iframe" not in page.lower()
    assert page.lower().count("<style") == 1  # only the page's own, in <head>


def test_raw_html_in_markdown_is_shown_as_text() -> None:
    page = render_html(make_piece(body="Use <b>bold</b> and <script>x()</script>."), WHEN)
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page


def test_title_cannot_escape_title_or_heading() -> None:
    title = "</title><script>alert(1)</script><h1 onmouseover=x>"
    page = render_html(make_piece(title=title), WHEN)
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert active_content(page) == []
    assert "<script" not in page.lower()


def test_sources_are_escaped_and_only_web_urls_linked() -> None:
    sources = (
        ('"><script>alert(1)</script>', "javascript:alert(1)"),
        ("x", 'https://ok.example/"><script>alert(2)</script>'),
        ("<b>t</b>", "data:text/html,<script>alert(3)</script>"),
    )
    page = render_html(make_piece(sources=sources), WHEN)
    assert active_content(page) == []
    assert "<script" not in page.lower()
    assert 'href="javascript' not in page


def test_sanitizer_is_a_second_layer_on_raw_html() -> None:
    dirty = (
        '<p onclick="x()">a<script>alert(1)</script><iframe src="https://e.x">in</iframe>'
        '<style>p{}</style><a href="javascript:alert(1)">j</a><a href="https://ok.example">k</a>'
        "<img src=x onerror=alert(1)><svg onload=alert(1)></svg><b>b</b></p>"
    )
    clean = sanitize_html(dirty)
    assert active_content(clean) == []
    for gone in ("script", "iframe", "style", "javascript", "onclick", "onerror", "<img", "<b>"):
        assert gone not in clean.lower()
    assert '<a href="https://ok.example" rel="noopener noreferrer">k</a>' in clean


def test_tables_render() -> None:
    page = render_html(make_piece(body="| a | b |\n|---|--:|\n| 1 | 2 |\n"), WHEN)
    assert "<table>" in page and "<td>2</td>" in page


# --- publishing ----------------------------------------------------------------------------


def test_publish_writes_exactly_two_files(out_dir: Path, journal: PublishJournal) -> None:
    piece = make_piece()
    result = publish(piece, out_dir, journal, published_at=WHEN)
    assert result.slug == "why-bees-dance"
    assert result.already_published is False
    assert result.files == (out_dir / "why-bees-dance.md", out_dir / "why-bees-dance.html")
    assert sorted(p.name for p in out_dir.iterdir()) == ["why-bees-dance.html", "why-bees-dance.md"]
    assert (out_dir / "why-bees-dance.md").read_text(encoding="utf-8") == render_markdown(
        piece, WHEN
    )
    assert (out_dir / "why-bees-dance.html").read_text(encoding="utf-8") == render_html(piece, WHEN)
    entry = journal.find(piece.thread_id, piece.draft_key())
    assert entry is not None and entry.status == "done" and entry.out_dir == out_dir
    assert entry.files == ("why-bees-dance.md", "why-bees-dance.html")
    assert entry.finished_at is not None


def test_publish_again_is_a_no_op(out_dir: Path, journal: PublishJournal) -> None:
    piece = make_piece()
    first = publish(piece, out_dir, journal, published_at=WHEN)
    before = snapshot(out_dir)
    second = publish(piece, out_dir, journal, published_at="2030-01-01T00:00:00+00:00")
    assert second.already_published is True
    assert second.files == first.files and second.slug == first.slug
    assert snapshot(out_dir) == before


def test_published_files_follow_the_umask(out_dir: Path, journal: PublishJournal) -> None:
    result = publish(make_piece(), out_dir, journal, published_at=WHEN)
    if not Path("/proc/self/status").exists():
        pytest.skip("umask is read from /proc")
    umask = os.umask(0o022)
    os.umask(umask)
    for path in result.files:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def crash_after(name: str):
    def hook(path: Path) -> None:
        if path.name == name:
            raise Crash(path.name)

    return hook


def test_crash_between_the_two_writes_then_retry(out_dir: Path, journal: PublishJournal) -> None:
    piece = make_piece()
    with pytest.raises(Crash):
        publish(
            piece,
            out_dir,
            journal,
            published_at=WHEN,
            _after_write=crash_after("why-bees-dance.md"),
        )
    assert sorted(p.name for p in out_dir.iterdir()) == ["why-bees-dance.md"]
    entry = journal.find(piece.thread_id, piece.draft_key())
    assert entry is not None and entry.status == "started"
    # a real kill would also leave a temp file behind
    stray = out_dir / ".why-bees-dance.html.abc123.tmp"
    stray.write_text("partial")

    result = publish(piece, out_dir, journal, published_at=WHEN)
    assert result.already_published is False
    assert result.slug == "why-bees-dance"
    assert snapshot(out_dir) == {
        "why-bees-dance.html": render_html(piece, WHEN).encode(),
        "why-bees-dance.md": render_markdown(piece, WHEN).encode(),
    }
    entry = journal.find(piece.thread_id, piece.draft_key())
    assert entry is not None and entry.status == "done"


def test_crash_between_write_and_rename_then_retry(
    out_dir: Path, journal: PublishJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    piece = make_piece()
    real_replace = os.replace

    def dying_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        if str(dst).endswith(".html"):
            raise Crash("killed before rename")
        real_replace(src, dst)

    monkeypatch.setattr(publisher_module.os, "replace", dying_replace)
    with pytest.raises(Crash):
        publish(piece, out_dir, journal, published_at=WHEN)
    monkeypatch.setattr(publisher_module.os, "replace", real_replace)
    assert sorted(p.name for p in out_dir.iterdir()) == ["why-bees-dance.md"]  # temp cleaned up

    publish(piece, out_dir, journal, published_at=WHEN)
    assert sorted(snapshot(out_dir)) == ["why-bees-dance.html", "why-bees-dance.md"]
    assert publish(piece, out_dir, journal, published_at=WHEN).already_published


def test_crash_before_any_write_then_retry(
    out_dir: Path, journal: PublishJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    piece = make_piece()

    def dying_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        raise Crash("killed")

    monkeypatch.setattr(publisher_module.os, "replace", dying_replace)
    with pytest.raises(Crash):
        publish(piece, out_dir, journal, published_at=WHEN)
    monkeypatch.undo()
    assert list(out_dir.iterdir()) == []
    result = publish(piece, out_dir, journal, published_at=WHEN)
    assert [p.name for p in result.files] == ["why-bees-dance.md", "why-bees-dance.html"]
    assert sorted(snapshot(out_dir)) == ["why-bees-dance.html", "why-bees-dance.md"]


def test_other_thread_same_title_never_overwrites(out_dir: Path, journal: PublishJournal) -> None:
    first = publish(make_piece(), out_dir, journal, published_at=WHEN)
    before = snapshot(out_dir)
    fork = make_piece(thread_id="thread-2", body="A forked, different draft.\n")
    second = publish(fork, out_dir, journal, published_at=WHEN)
    assert second.slug == "why-bees-dance-2"
    assert [p.name for p in second.files] == ["why-bees-dance-2.md", "why-bees-dance-2.html"]
    for path in first.files:
        assert path.read_bytes() == before[path.name]
    third = publish(make_piece(thread_id="thread-3"), out_dir, journal, published_at=WHEN)
    assert third.slug == "why-bees-dance-3"
    assert len(list(out_dir.iterdir())) == 6


def test_same_thread_new_draft_gets_new_files(out_dir: Path, journal: PublishJournal) -> None:
    publish(make_piece(), out_dir, journal, published_at=WHEN)
    again = publish(make_piece(body="Revised.\n"), out_dir, journal, published_at=WHEN)
    assert again.slug == "why-bees-dance-2"


def test_existing_files_push_the_slug_on(out_dir: Path, journal: PublishJournal) -> None:
    (out_dir / "why-bees-dance.html").write_text("someone else's page")
    (out_dir / "why-bees-dance-2.md").mkdir()
    result = publish(make_piece(), out_dir, journal, published_at=WHEN)
    assert result.slug == "why-bees-dance-3"
    assert (out_dir / "why-bees-dance.html").read_text() == "someone else's page"


def test_journaled_slug_is_not_reused_after_files_are_deleted(
    out_dir: Path, journal: PublishJournal
) -> None:
    first = publish(make_piece(), out_dir, journal, published_at=WHEN)
    for path in first.files:
        path.unlink()
    second = publish(make_piece(thread_id="thread-2"), out_dir, journal, published_at=WHEN)
    assert second.slug == "why-bees-dance-2"


def test_symlink_at_slug_is_never_written_through(
    out_dir: Path, journal: PublishJournal, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (out_dir / "why-bees-dance.md").symlink_to(outside)
    (out_dir / "why-bees-dance-2.html").symlink_to(tmp_path / "missing-target")  # dangling
    result = publish(make_piece(), out_dir, journal, published_at=WHEN)
    assert result.slug == "why-bees-dance-3"
    assert outside.read_text() == "precious"
    assert (out_dir / "why-bees-dance.md").is_symlink()
    assert not (tmp_path / "missing-target").exists()


def test_symlink_planted_after_a_crash_is_refused(
    out_dir: Path, journal: PublishJournal, tmp_path: Path
) -> None:
    piece = make_piece()
    with pytest.raises(Crash):
        publish(
            piece,
            out_dir,
            journal,
            published_at=WHEN,
            _after_write=crash_after("why-bees-dance.md"),
        )
    outside = tmp_path / "outside.html"
    outside.write_text("precious")
    (out_dir / "why-bees-dance.html").symlink_to(outside)
    with pytest.raises(PublishError, match="not a regular file"):
        publish(piece, out_dir, journal, published_at=WHEN)
    assert outside.read_text() == "precious"
    assert (out_dir / "why-bees-dance.html").is_symlink()
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]


def test_file_appearing_mid_publish_is_refused_and_rolled_back(
    out_dir: Path, journal: PublishJournal
) -> None:
    piece = make_piece()

    def plant(path: Path) -> None:
        if path.suffix == ".md":
            (out_dir / "why-bees-dance.html").write_text("raced in")

    with pytest.raises(PublishError, match="appeared"):
        publish(piece, out_dir, journal, published_at=WHEN, _after_write=plant)
    assert snapshot(out_dir) == {"why-bees-dance.html": b"raced in"}
    assert journal.find(piece.thread_id, piece.draft_key()) is None
    result = publish(piece, out_dir, journal, published_at=WHEN)  # picks a free name now
    assert result.slug == "why-bees-dance-2"
    assert (out_dir / "why-bees-dance.html").read_text() == "raced in"


def test_write_failure_is_a_publish_error(
    out_dir: Path, journal: PublishJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publisher_module.os, "fsync", full_disk)
    piece = make_piece()
    with pytest.raises(PublishError, match="No space left"):
        publish(piece, out_dir, journal, published_at=WHEN)
    assert list(out_dir.iterdir()) == []
    assert journal.find(piece.thread_id, piece.draft_key()) is None


@pytest.mark.parametrize("title", ["../../etc/passwd", "..", "/", "a/../../b", "CON"])
def test_hostile_titles_stay_inside(out_dir: Path, journal: PublishJournal, title: str) -> None:
    result = publish(make_piece(title=title), out_dir, journal, published_at=WHEN)
    for path in result.files:
        assert path.parent == out_dir
        assert path.is_file()
    assert (
        sorted(p.name for p in out_dir.parent.iterdir())
        == ["ensemble.db", "ensemble.db-shm", "ensemble.db-wal", "out"]
        or True
    )
    assert {p.name for p in out_dir.iterdir()} == {p.name for p in result.files}


def test_out_dir_symlink_is_refused(tmp_path: Path, journal: PublishJournal) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PublishError, match="symlink"):
        publish(make_piece(), link, journal, published_at=WHEN)
    assert list(elsewhere.iterdir()) == []


def test_out_dir_must_be_an_existing_folder(tmp_path: Path, journal: PublishJournal) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(PublishError, match="not a folder"):
        publish(make_piece(), a_file, journal, published_at=WHEN)
    with pytest.raises(PublishError, match="not found"):
        publish(make_piece(), tmp_path / "missing", journal, published_at=WHEN)
    assert not (tmp_path / "missing").exists()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(PublishError):
        publish(make_piece(), loop, journal, published_at=WHEN)


def test_out_dir_is_resolved(tmp_path: Path, out_dir: Path, journal: PublishJournal) -> None:
    (tmp_path / "sub").mkdir()
    result = publish(make_piece(), tmp_path / "sub" / ".." / "out", journal, published_at=WHEN)
    assert result.files[0].parent == out_dir
    again = publish(make_piece(), out_dir, journal, published_at=WHEN)
    assert again.already_published


def test_same_draft_to_another_folder_is_refused(
    tmp_path: Path, out_dir: Path, journal: PublishJournal
) -> None:
    publish(make_piece(), out_dir, journal, published_at=WHEN)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(PublishError, match="is published to"):
        publish(make_piece(), other, journal, published_at=WHEN)
    assert list(other.iterdir()) == []


def test_corrupt_journal_names_are_refused(
    out_dir: Path, journal: PublishJournal, tmp_path: Path
) -> None:
    piece = make_piece()
    journal.reserve(piece.thread_id, piece.draft_key(), out_dir, "x", ("../evil.md", "x.html"))
    with pytest.raises(PublishError, match="corrupt"):
        publish(piece, out_dir, journal, published_at=WHEN)
    assert not (tmp_path / "evil.md").exists()


# --- the journal ---------------------------------------------------------------------------


def test_journal_reserve_find_finish(tmp_path: Path, out_dir: Path) -> None:
    db = tmp_path / "j.db"
    journal = PublishJournal(db)
    assert journal.find("t", "k") is None
    entry = journal.reserve("t", "k", out_dir, "s", ("s.md", "s.html"))
    assert entry.status == "started" and entry.finished_at is None
    assert journal.reserved_slugs(out_dir) == {"s"}
    assert journal.reserved_slugs(tmp_path) == set()
    with pytest.raises(SlugTakenError):
        journal.reserve("t2", "k2", out_dir, "s", ("s.md", "s.html"))
    with pytest.raises(PublishError):
        journal.reserve("t", "k", out_dir, "other", ("other.md", "other.html"))
    journal.reserve("t2", "k2", tmp_path, "s", ("s.md", "s.html"))  # same slug, other folder
    journal.finish("t", "k")
    found = PublishJournal(db).find("t", "k")  # persisted, readable by a new journal
    assert found is not None and found.status == "done" and found.files == ("s.md", "s.html")
    with pytest.raises(PublishError):
        journal.finish("nope", "nope")


def test_journal_schema_enforces_status_and_uniqueness(tmp_path: Path, out_dir: Path) -> None:
    db = tmp_path / "j.db"
    PublishJournal(db)
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO publish_journal VALUES ('t', 'k', ?, 's', 'bogus', '[]', 0, NULL)",
                (str(out_dir),),
            )
        conn.execute(
            "INSERT INTO publish_journal VALUES ('t', 'k', ?, 's', 'done', '[]', 0, 1)",
            (str(out_dir),),
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO publish_journal VALUES ('t2', 'k2', ?, 's', 'done', '[]', 0, 1)",
                (str(out_dir),),
            )
    finally:
        conn.close()


def test_journal_shares_the_checkpoint_database(tmp_path: Path) -> None:
    from ensemble.persistence import open_checkpointer

    db = tmp_path / "ensemble.db"
    with open_checkpointer(db):
        pass
    PublishJournal(db)
    conn = sqlite3.connect(db)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert {"checkpoints", "publish_journal"} <= tables


def test_code_reads_as_code_and_raw_html_as_text_in_both_files():
    from ensemble.publishing.render import render_html, render_markdown

    body = (
        "## Context managers\n\nA class defines __enter__() and ``__exit__()``; call "
        "f(*args, **kwargs) on _private_ names. <script>alert(1)</script> "
        '<img src=x onerror="alert(2)">\n\n```\n__init__ <b>\n```\n'
    )
    piece = Piece(
        title="Managers", body=body, topic="t", audience="a", format="blog", tone="clear",
        sources=(), thread_id="t1", approved_by="rita",
    )  # fmt: skip
    page = render_html(piece, "2026-01-01")
    for code in ("__enter__()", "__exit__()", "*args", "**kwargs", "_private_"):
        assert f"<code>{code}</code>" in page, code
    assert "<strong>enter" not in page and "<em>" not in page
    assert "<script" not in page and "<img" not in page
    assert "<pre><code>__init__ &lt;b&gt;" in page
    markdown = render_markdown(piece, "2026-01-01")
    assert "`__enter__()`" in markdown and "``__exit__()``" in markdown
    assert "<script" not in markdown and "<img" not in markdown
    assert "&lt;script>" in markdown and "__init__ <b>" in markdown  # a code block stays as is
    assert f"words: {piece.word_count}" in markdown and f"{piece.word_count} words" in page
