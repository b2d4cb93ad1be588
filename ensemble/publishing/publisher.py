"""Publish an approved piece into the chosen folder: exactly once, and never outside it.

Order: reserve names in the journal -> write the .md -> write the .html -> mark done. Each file
is written to a temp file in the folder, fsynced, and renamed into place, so a reader never sees
half a file. After a crash the journal's 'started' row names the files to finish; a later call
for the same draft rewrites exactly those and nothing else. A different draft or thread with the
same title gets `<slug>-2`, `-3`, ... so an earlier publication is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ensemble.publishing.errors import PublishError, SlugTakenError
from ensemble.publishing.journal import Entry, PublishJournal
from ensemble.publishing.piece import Piece
from ensemble.publishing.render import render_html, render_markdown
from ensemble.publishing.slug import check_name, slugify, with_suffix

EXTENSIONS = (".md", ".html")
MAX_SUFFIX = 1000
_RESERVE_ATTEMPTS = 20

AfterWrite = Callable[[Path], None]


@dataclass(frozen=True)
class PublishResult:
    """Where a piece was published; `already_published` when an earlier call had done it."""

    files: tuple[Path, ...]
    slug: str
    already_published: bool


def publish(
    piece: Piece,
    out_dir: Path,
    journal: PublishJournal,
    *,
    published_at: str,
    key: str | None = None,
    _after_write: AfterWrite | None = None,
) -> PublishResult:
    """Write `piece` as `<slug>.md` and `<slug>.html` into `out_dir`, once per draft.

    Args:
        piece: The approved draft.
        out_dir: An existing folder (not itself a symlink); files go directly inside it.
        journal: Records publications, so replays and retries are no-ops or completions.
        published_at: The timestamp written into both files.
        key: What identifies this publication in the journal (default: the draft's hash). The
            content pipeline passes its approval's id, so each approval publishes once.
        _after_write: Test seam, called after each file is renamed into place.

    Raises:
        PublishError: The folder is unusable, a name is unsafe or taken, or writing failed.
    """
    root = resolve_out_dir(out_dir)
    key = key or piece.draft_key()
    entry = journal.find(piece.thread_id, key)
    if entry is not None and entry.out_dir != root:
        raise PublishError(
            f"this draft of thread {piece.thread_id} is published to {entry.out_dir}, not {root}"
        )
    if entry is not None and entry.status == "done":
        return PublishResult(_paths(root, entry), entry.slug, already_published=True)
    contents = {
        ".md": render_markdown(piece, published_at),
        ".html": render_html(piece, published_at),
    }
    written: list[Path] = []
    if entry is not None:  # a crash left it half done: finish exactly those names
        paths = _paths(root, entry)
        for path in paths:  # temp files the crashed attempt left for these names
            for stray in root.glob(f".{path.name}.*.tmp"):
                _remove_file(stray)
        _write_all(root, paths, contents, written, overwrite=True, after_write=_after_write)
    else:
        entry = _reserve(piece, key, root, journal)
        paths = _paths(root, entry)
        try:
            _write_all(root, paths, contents, written, overwrite=False, after_write=_after_write)
        except PublishError:  # undo the refused attempt: its files, then its reservation
            for path in written:
                _remove_file(path)
            journal.release(piece.thread_id, key)
            raise
    journal.finish(piece.thread_id, key)
    return PublishResult(paths, entry.slug, already_published=False)


def resolve_out_dir(out_dir: Path) -> Path:
    """Return the real path of `out_dir`, or raise `PublishError` if it is not a usable folder."""
    text = os.fspath(out_dir)
    if not text or "\x00" in text:
        raise PublishError("the output folder is not a valid path")
    path = Path(text)
    refuse_symlinks(path)
    try:
        root = path.resolve(strict=True)
        mode = root.stat().st_mode
    except (OSError, RuntimeError) as error:  # missing, unreadable, or a symlink loop
        raise PublishError(f"output folder not found: {path}") from error
    if not stat.S_ISDIR(mode):
        raise PublishError(f"output path is not a folder: {path}")
    return root


def refuse_symlinks(path: Path) -> None:
    """Refuse a folder path with a symlink in any part the user wrote.

    Nothing is written through a link, at any depth; a relative path is checked from the
    working folder down.

    Raises:
        PublishError: Naming the part that is a symlink.
    """
    full = Path.cwd() / path.expanduser()  # the working folder is a real path (getcwd)
    for current in [*reversed(full.parents), full]:
        if current.is_symlink():
            raise PublishError(
                f"output folder {path}: {current} is a symlink; give the real folder"
            )


def _reserve(piece: Piece, key: str, root: Path, journal: PublishJournal) -> Entry:
    """Reserve the first free slug; another process may take one first, then try the next."""
    base = slugify(piece.title)
    for _ in range(_RESERVE_ATTEMPTS):
        slug = _free_slug(base, root, journal.reserved_slugs(root))
        check_name(slug)
        files = tuple(slug + ext for ext in EXTENSIONS)
        try:
            return journal.reserve(piece.thread_id, key, root, slug, files)
        except SlugTakenError:
            continue
    raise PublishError(f"could not reserve a file name for {base!r} in {root}; try again")


def _free_slug(base: str, root: Path, reserved: set[str]) -> str:
    """`base`, else `base-2`, `base-3`, ...: the first with no journal entry and no file."""
    for number in range(1, MAX_SUFFIX + 1):
        slug = base if number == 1 else with_suffix(base, number)
        if slug in reserved:
            continue
        # lexists: a dangling symlink or a folder of that name also makes the name taken.
        if any(os.path.lexists(root / (slug + ext)) for ext in EXTENSIONS):
            continue
        return slug
    raise PublishError(f"too many pieces named {base!r} in {root}")


def _paths(root: Path, entry: Entry) -> tuple[Path, ...]:
    """The entry's files as paths in `root`, after checking the journal names what we expect."""
    expected = tuple(entry.slug + ext for ext in EXTENSIONS)
    if entry.files != expected:
        raise PublishError(f"corrupt publish journal entry for thread {entry.thread_id}")
    check_name(entry.slug)
    paths = tuple(root / name for name in entry.files)
    if any(path.parent != root for path in paths):
        raise PublishError(f"refusing to write outside {root}")
    return paths


def _write_all(
    root: Path,
    paths: Sequence[Path],
    contents: dict[str, str],
    written: list[Path],
    *,
    overwrite: bool,
    after_write: AfterWrite | None,
) -> None:
    """Write each path's content in turn; `written` collects those renamed into place."""
    for path in paths:
        try:
            _write_file(root, path, contents[path.suffix].encode("utf-8"), overwrite=overwrite)
        except OSError as error:
            raise PublishError(f"cannot write {path}: {error.strerror or error}") from error
        written.append(path)
        if after_write is not None:
            after_write(path)
    _fsync_dir(root)  # make both renames durable before the journal says 'done'


def _write_file(root: Path, final: Path, data: bytes, *, overwrite: bool) -> None:
    """Write `data` to `final` atomically via a temp file in `root`; never follow a link."""
    if final.parent != root:
        raise PublishError(f"refusing to write outside {root}")
    tmp = tempfile.NamedTemporaryFile(
        dir=root, delete=False, prefix=f".{final.name}.", suffix=".tmp"
    )
    tmp_path = Path(tmp.name)
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        mode = _file_mode()
        if mode is not None:
            os.chmod(tmp_path, mode)
        _check_target(final, overwrite=overwrite)
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _check_target(final: Path, *, overwrite: bool) -> None:
    """Refuse to replace anything but our own earlier write (a regular file, when resuming)."""
    try:
        mode = os.lstat(final).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
        raise PublishError(f"refusing to replace {final}: it is not a regular file")
    if not overwrite:
        raise PublishError(f"refusing to overwrite {final}: it appeared while publishing")


def _remove_file(path: Path) -> None:
    """Delete `path` if it is a regular file (never a link); a failure leaves it in place."""
    with contextlib.suppress(OSError):
        if path.is_file() and not path.is_symlink():
            path.unlink()


def _fsync_dir(root: Path) -> None:
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; renames are durable enough there
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _file_mode() -> int | None:
    """Mode for published files: 0o666 less the umask, read without changing it (Linux).

    Temp files are created 0o600; elsewhere they keep that private mode rather than guess.
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return None
