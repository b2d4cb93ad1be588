"""Tests of the corpus index: folder corpora, stable ids, refresh, odd queries, default corpus."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from ensemble.corpus import CorpusError, CorpusIndex, IndexStats, Passage, open_corpus
from ensemble.corpus.sources import chunk_text, html_to_text

MD = """# Kestrel Migration

Kestrels are small falcons. They hover while hunting over open fields.

## Routes

In autumn the birds follow river valleys southward.
"""

TXT = """Notes on sourdough baking.

A starter needs flour and water, fed daily. Keep it warm.
"""

RST = """Lighthouse Keeping
==================

The lamp must be trimmed every evening before dusk.
"""

HTML = """<html><head><title>Glacier Survey</title>
<style>.x { color: red }</style></head>
<body><h1>Glacier Survey</h1>
<p>The glacier retreated forty metres &amp; more this year.</p>
<script>var secretzebra = "must not be indexed";</script>
</body></html>
"""

NESTED = """Tidal Pools
-----------

Anemones and barnacles live in tidal pools along rocky shores.
"""


def _ids(db: Path, key: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT passage_id FROM corpus_passages WHERE corpus_key = ?", (key,)
        ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "kestrel.md").write_text(MD)
    (root / "bread.txt").write_text(TXT)
    (root / "light.rst").write_text(RST)
    (root / "glacier.html").write_text(HTML)
    (root / "sub" / "deeper" / "pools.rst").write_text(NESTED)
    (root / "script.py").write_text('"""Kestrel python file that must be ignored."""\n')
    return root


@pytest.fixture
def index(tmp_path: Path, folder: Path):
    idx = CorpusIndex(tmp_path / "db" / "app.db", folder)
    yield idx
    idx.close()


def test_search_finds_passage_and_titles(index: CorpusIndex) -> None:
    stats = index.ensure()
    assert isinstance(stats, IndexStats)
    assert stats.documents == 5
    assert stats.indexed_now == 5
    assert stats.corpus_key == index.key == f"dir:{index.corpus_dir}"

    hits = index.search("where do kestrels hover?")
    assert hits and hits[0].id == "file:kestrel.md#1"
    assert hits[0].title == "Kestrel Migration"
    assert hits[0].source == "kestrel.md"
    assert hits[0].score > 0

    # A title hit outranks a passing mention in the text.
    (index.corpus_dir / "mention.txt").write_text("Once we passed a lighthouse on the way.\n")
    index.ensure()
    hits = index.search("lighthouse")
    assert [h.id for h in hits[:2]] == ["file:light.rst#1", "file:mention.txt#1"]
    assert hits[0].score > hits[1].score

    assert index.search("anemones")[0].id == "file:sub/deeper/pools.rst#1"
    assert index.search("anemones")[0].title == "Tidal Pools"
    assert index.search("sourdough")[0].title == "bread"  # .txt: the file name
    glacier = index.search("glacier retreated")[0]
    assert glacier.title == "Glacier Survey"
    assert "forty metres & more" in glacier.text


def test_ignored_content(index: CorpusIndex) -> None:
    assert index.search("secretzebra") == []  # <script> content
    assert index.search("color red") == []  # <style> content
    assert all(not h.id.endswith(".py#1") for h in index.search("kestrel python ignored"))


def test_ids_stable_across_rebuild_and_reensure(tmp_path: Path, folder: Path) -> None:
    a = CorpusIndex(tmp_path / "a.db", folder)
    b = CorpusIndex(tmp_path / "b.db", folder)
    a.ensure()
    b.ensure()
    first = _ids(tmp_path / "a.db", a.key)
    assert first == _ids(tmp_path / "b.db", b.key)
    assert "file:sub/deeper/pools.rst#1" in first
    again = a.ensure()
    assert again.indexed_now == 0
    assert _ids(tmp_path / "a.db", a.key) == first
    a.close()
    b.close()


def test_edit_reindexes_only_that_file(index: CorpusIndex, folder: Path) -> None:
    index.ensure()
    path = folder / "bread.txt"
    path.write_text("Notes on rye crackers.\n\nRoll the dough thin and bake until crisp.\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    stats = index.ensure()
    assert stats.indexed_now == 1
    assert stats.documents == 5
    assert index.search("sourdough") == []
    assert index.search("rye crackers")[0].id == "file:bread.txt#1"


def test_touch_without_change_is_not_reindexed(index: CorpusIndex, folder: Path) -> None:
    index.ensure()
    path = folder / "light.rst"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    assert index.ensure().indexed_now == 0
    assert index.search("lamp trimmed")[0].id == "file:light.rst#1"


def test_delete_and_add_files(index: CorpusIndex, folder: Path) -> None:
    index.ensure()
    (folder / "kestrel.md").unlink()
    (folder / "sub" / "new.md").write_text("# Comets\n\nComets have icy nuclei.\n")
    stats = index.ensure()
    assert stats.indexed_now == 1
    assert stats.documents == 5
    assert index.search("kestrels falcons") == []
    assert index.get("file:kestrel.md#1") is None
    assert index.search("comets")[0].id == "file:sub/new.md#1"


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CorpusError, match="corpus folder not found") as err:
        CorpusIndex(tmp_path / "x.db", missing)
    assert str(missing) in str(err.value)
    not_a_dir = tmp_path / "file.md"
    not_a_dir.write_text("# hi")
    with pytest.raises(CorpusError):
        CorpusIndex(tmp_path / "x.db", not_a_dir)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "code.py").write_text("x = 1\n")
    idx = CorpusIndex(tmp_path / "x.db", empty)
    with pytest.raises(CorpusError, match="no .md/.txt/.rst/.html files") as err:
        idx.ensure()
    assert str(empty) in str(err.value)
    with pytest.raises(CorpusError):
        idx.search("anything")
    idx.close()


def test_unreadable_database(tmp_path: Path, folder: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(CorpusError, match="bad.db"):
        CorpusIndex(bad, folder).ensure()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "AND OR NOT",
        '"unbalanced',
        "NEAR(",
        "kestrel NEAR( OR",
        "title:kestrel",
        "*",
        "-kestrel ^falcon",
        "🦅🦅 🔥",
        "a an the of",
        "x" * 10_000,
        "kestrel " * 2_000,
        "é_ü__ ___",
    ],
)
def test_weird_queries_never_raise(index: CorpusIndex, query: str) -> None:
    result = index.search(query, k=3)
    assert isinstance(result, list)
    assert len(result) <= 3


def test_weird_queries_results(index: CorpusIndex) -> None:
    assert index.search("") == []
    assert index.search("the of and") == []
    assert index.search("🦅") == []
    assert index.search("kestrel NEAR(")[0].id == "file:kestrel.md#1"
    assert index.search('"kestrel')[0].id == "file:kestrel.md#1"
    assert index.search("kestrel", k=0) == []
    assert index.search("kestrel " * 2_000)[0].id == "file:kestrel.md#1"


def test_get_and_get_many(index: CorpusIndex) -> None:
    passage = index.get("file:light.rst#1")
    assert isinstance(passage, Passage)
    assert passage.title == "Lighthouse Keeping"
    assert "lamp must be trimmed" in passage.text
    assert passage.score == 0.0
    assert index.get("file:light.rst#99") is None
    assert index.get("pydoc:assert#1") is None
    many = index.get_many(["file:light.rst#1", "file:kestrel.md#1", "missing#1"])
    assert set(many) == {"file:light.rst#1", "file:kestrel.md#1"}
    assert many["file:kestrel.md#1"].source == "kestrel.md"
    assert index.get_many([]) == {}


def test_two_corpora_in_one_db_do_not_leak(tmp_path: Path, folder: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "kestrel-notes.md").write_text("# Falcon notes\n\nThe kestrel nests in cliffs.\n")
    db = tmp_path / "shared.db"
    a, b = CorpusIndex(db, folder), CorpusIndex(db, other)
    assert a.key != b.key
    assert {h.id for h in a.search("kestrel")} == {"file:kestrel.md#1"}
    assert {h.id for h in b.search("kestrel")} == {"file:kestrel-notes.md#1"}
    assert b.get("file:kestrel.md#1") is None
    assert b.search("glacier") == []
    a.close()
    b.close()


def test_open_corpus_caches(tmp_path: Path, folder: Path) -> None:
    db = tmp_path / "c.db"
    first = open_corpus(db, folder)
    assert open_corpus(str(db), str(folder)) is first
    assert open_corpus(tmp_path / "." / "c.db", folder / "sub" / "..") is first
    assert open_corpus(db) is not first
    assert open_corpus(db) is open_corpus(db)
    with pytest.raises(CorpusError):
        open_corpus(db, tmp_path / "missing")
    first.close()
    assert first.search("kestrel")  # reopens after close


def test_threads_share_one_index(index: CorpusIndex) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = ["kestrel", "glacier", "lamp", "anemones"] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(index.search, queries))
    assert all(results)


def test_chunking_sizes_and_html() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 30 for i in range(20)]
    chunks = chunk_text("\n\n\n".join(paragraphs))
    assert len(chunks) > 2
    assert all(len(c) <= 1200 for c in chunks)
    assert all(len(c) >= 400 for c in chunks[:-1])
    huge = "This is a sentence. " * 400
    chunks = chunk_text(huge)
    assert len(chunks) > 5 and all(len(c) <= 1200 for c in chunks)
    assert chunk_text("   \n\n  ") == []
    title, text = html_to_text(HTML)
    assert title == "Glacier Survey"
    assert "secretzebra" not in text and "color" not in text


@pytest.fixture(scope="module")
def python_corpus(tmp_path_factory: pytest.TempPathFactory):
    before = set(sys.modules)
    idx = CorpusIndex(tmp_path_factory.mktemp("pycorpus") / "app.db")
    stats = idx.ensure()
    imported = set(sys.modules) - before
    yield idx, stats, imported
    idx.close()


def test_default_python_corpus(python_corpus) -> None:
    idx, stats, imported = python_corpus
    assert idx.key.startswith("python-3.")
    assert stats.passages > 3000
    assert stats.indexed_now == stats.documents > 1000
    assert not {"antigravity", "this", "turtle", "tkinter"} & imported

    hits = idx.search("json decode")
    assert any(h.id.startswith("stdlib:json") and h.source.startswith("json") for h in hits)
    hits = idx.search("assert statement")
    assert any(h.id.startswith("pydoc:assert#") for h in hits)
    assert any(h.source == "Python language reference: assert" for h in hits)
    assert any(h.title == 'The "assert" statement' for h in hits)  # the heading, not the key

    again = idx.ensure()
    assert again.indexed_now == 0
    assert again.passages == stats.passages
    assert again.seconds < 0.5

    ids = [h.id for h in idx.search("json decode")]
    assert idx.get_many(ids).keys() == set(ids)
