"""Which folders a run may use as its corpus: anything locally, only the roots when served."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ensemble.corpus import CorpusError
from ensemble.corpus.access import resolve_corpus
from ensemble.corpus.sources import scan_folder
from ensemble.workspace import from_environment


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """Two roots with corpora, a secret outside them, and escapes planted inside."""
    docs = tmp_path / "roots" / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides" / "a.md").write_text("# Guide\n\nBees make honey.", encoding="utf-8")
    notes = tmp_path / "roots" / "notes"
    notes.mkdir()
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "secret.md").write_text("TOPSECRET-4242", encoding="utf-8")
    (docs / "escape").symlink_to(secret, target_is_directory=True)
    (docs / "file.md").write_text("not a folder", encoding="utf-8")
    return {"docs": docs, "notes": notes, "secret": secret}


def test_blank_or_missing_means_the_default_corpus(tree):
    assert resolve_corpus(None, [tree["docs"]]) is None
    assert resolve_corpus("  ", ()) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        ("docs", "docs"),
        ("notes", "notes"),
        ("docs/guides", "docs/guides"),
        ("guides", "docs/guides"),
    ],
)
def test_names_and_relative_paths_inside_the_roots(tree, name, expected):
    roots = [tree["docs"], tree["notes"]]
    assert resolve_corpus(name, roots) == (tree["docs"].parent / expected).resolve()


def test_absolute_path_inside_a_root_is_allowed(tree):
    target = tree["docs"] / "guides"
    assert resolve_corpus(str(target), [tree["docs"]]) == target.resolve()


@pytest.mark.parametrize(
    "value, message",
    [
        ("{secret}", "not a folder inside the allowed corpus roots"),
        ("/etc", "not a folder inside the allowed corpus roots"),
        ("../private", "must not contain '..'"),
        ("docs/../../private", "must not contain '..'"),
        ("{docs}/../../private", "must not contain '..'"),
        ("docs/escape", "leaves its root folder"),
        ("escape", "leaves its root folder"),
        ("docs/file.md", "is not a folder"),
        ("missing", "not a folder inside the allowed corpus roots"),
        ("~", "not a folder inside the allowed corpus roots"),
        ("docs\x00", "not a valid folder name"),
    ],
)
def test_escapes_are_refused_before_anything_is_read(tree, value, message):
    value = value.format(secret=tree["secret"], docs=tree["docs"])
    with pytest.raises(CorpusError, match=message.replace("(", r"\(")):
        resolve_corpus(value, [tree["docs"], tree["notes"]])


def test_device_files_are_refused(tree):
    with pytest.raises(CorpusError, match="not a folder"):
        resolve_corpus("/dev/null", [Path("/dev")])


def test_no_roots_means_only_the_default_corpus(tree):
    with pytest.raises(CorpusError, match="allowed no corpus folders"):
        resolve_corpus(str(tree["docs"]), ())


def test_the_local_user_may_name_any_folder(tree):
    assert resolve_corpus(str(tree["secret"]), None) == tree["secret"].resolve()
    with pytest.raises(CorpusError, match="corpus folder not found"):
        resolve_corpus(str(tree["secret"] / "nope"), None)


def test_a_folder_scan_skips_symlinks_that_leave_it_and_special_files(tree):
    docs = tree["docs"]
    (docs / "leak.md").symlink_to(tree["secret"] / "secret.md")
    (docs / "inside.md").symlink_to(docs / "guides" / "a.md")
    os.mkfifo(docs / "pipe.md")
    found = {f.relpath for f in scan_folder(docs)}
    assert found == {"guides/a.md", "file.md", "inside.md"}  # escape/ is a symlinked folder


def test_a_served_workspace_without_roots_allows_only_the_default(monkeypatch, tree):
    assert from_environment(served=True).corpus_roots == ()
    assert from_environment().corpus_roots is None  # the machine's own user reads any folder
    monkeypatch.setenv("ENSEMBLE_CORPUS_ROOTS", os.pathsep.join(map(str, [tree["docs"]])))
    assert from_environment(served=True).corpus_roots == (tree["docs"].resolve(),)
