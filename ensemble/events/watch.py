"""A watched folder: each document added or changed in it is a `document.changed` event.

The dispatcher scans the folder every few seconds. What it has seen (path, size, time, SHA-256)
is kept in the database, so a restarted dispatcher publishes only what changed while it was
away; the event's id is made of the path and the content's hash, so a scan repeated after a
crash stores the event once. Symbolic links are not followed, hidden files and files the corpus
cannot read are skipped, and nothing in the folder is ever written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ensemble.corpus.sources import INDEXABLE_SUFFIXES
from ensemble.events.event import Event, make_event
from ensemble.events.store import insert_events

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
"""Larger files are not documents the corpus would index; they are skipped."""


def scan(conn: Any, folder: Path) -> list[Event]:
    """Publish an event for each new or changed document under `folder` (caller's transaction).

    Returns the events that were new.
    """
    folder = folder.resolve()
    known = {
        row[0]: (row[1], int(row[2]), float(row[3]))
        for row in conn.execute(
            "SELECT path, sha256, size, mtime FROM ensemble_watched WHERE substr(path, 1, ?) = ?",
            (len(str(folder)) + 1, str(folder) + os.sep),
        ).fetchall()
    }
    events: list[Event] = []
    for path, size, mtime in _documents(folder):
        key = str(path)
        seen = known.get(key)
        if seen is not None and seen[1] == size and seen[2] == mtime:
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue  # removed or unreadable since it was listed
        conn.execute(
            "INSERT INTO ensemble_watched (path, sha256, size, mtime) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
            "mtime = excluded.mtime",
            (key, digest, size, mtime),
        )
        if seen is not None and seen[0] == digest:
            continue  # touched, not changed
        events.append(document_event(folder, path, digest, size, new=seen is None))
    stored = insert_events(conn, events)
    return [event for event, new in zip(events, stored, strict=True) if new]


def document_event(folder: Path, path: Path, digest: str, size: int, *, new: bool) -> Event:
    """The `document.changed` event of one file."""
    name = path.relative_to(folder).as_posix()
    event_id = "doc:" + hashlib.sha256(f"{path}\n{digest}".encode()).hexdigest()[:40]
    data = {
        "path": str(path),
        "folder": str(folder),
        "name": name,
        "title": _title(path),
        "sha256": digest,
        "size": size,
        "change": "added" if new else "modified",
    }
    return make_event("document.changed", data, source=f"watch:{folder}", id=event_id)


def _documents(folder: Path) -> Iterator[tuple[Path, int, float]]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or path.suffix.lower() not in INDEXABLE_SUFFIXES:
                continue
            try:
                info = path.lstat()
            except OSError:
                continue
            if path.is_symlink() or not path.is_file() or info.st_size > MAX_DOCUMENT_BYTES:
                continue
            yield path, info.st_size, info.st_mtime


def _title(path: Path) -> str:
    """The first heading of a Markdown file, else the file name in words."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for _, line in zip(range(40), handle, strict=False):
                if line.startswith("# "):
                    return line[2:].strip()[:200]
    except OSError:
        pass
    return path.stem.replace("-", " ").replace("_", " ").strip()[:200] or path.name
