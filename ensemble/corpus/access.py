"""Which folders a run may use as its corpus: any, for the machine's own user; else the roots.

A server's clients are untrusted, so a corpus they name is resolved against the operator's roots
before anything is read: by a root's name (`docs`), by a path relative to a root
(`docs/guides`, `guides`), or by an absolute path inside a root. `..`, symlinks that leave the
root, and anything that is not a folder are refused with a clear error.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path, PurePath

from ensemble.corpus.index import CorpusError

MAX_CORPUS_NAME_CHARS = 1024


def resolve_corpus(value: str | None, roots: Sequence[Path] | None) -> Path | None:
    """Return the folder `value` names (None for the default corpus), or raise `CorpusError`.

    Args:
        value: What the run's input says: None or blank for Python's documentation, else a
            folder (any folder when `roots` is None; a name or path inside `roots` otherwise).
        roots: The operator's corpus roots; None means unrestricted, `()` means default only.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise CorpusError(f"corpus must be a folder name or path, got {type(value).__name__}")
    if "\x00" in value or len(value) > MAX_CORPUS_NAME_CHARS:
        raise CorpusError("corpus is not a valid folder name")
    if roots is None:
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise CorpusError(f"corpus folder not found: {folder}")
        return folder.resolve()
    if not roots:
        raise CorpusError(
            "this server only searches its default corpus: the operator has allowed no corpus "
            "folders (ensemble serve --corpus-root DIR)"
        )
    return inside_roots(
        value.strip(), [Path(r).resolve() for r in roots], what="corpus", error=CorpusError
    )


def inside_roots(
    value: str, roots: list[Path], *, what: str, error: type[Exception], create: bool = False
) -> Path:
    """The existing folder `value` names inside `roots` (checked), else raise `error`.

    With `create`, a missing folder below a root is made (folder by folder, never through a
    symlink), so a client can name a new subfolder of an output root but nothing else.
    """
    pure = PurePath(value)
    if ".." in pure.parts or "\x00" in value:
        raise error(f"{what} {value!r} must not contain '..'")
    candidates = _candidates(pure, roots)
    for root, candidate in candidates:
        try:
            target = candidate.resolve(strict=True)
            mode = target.stat().st_mode
        except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
            continue
        if not target.is_relative_to(root):
            raise error(f"{what} {value!r} leaves its root folder (a symlink?)")
        if not stat.S_ISDIR(mode):
            raise error(f"{what} {value!r} is not a folder")
        return target
    if candidates and (create or what == "output_dir"):  # made now, or by the publisher later
        return _below(*candidates[0], make=create, value=value, what=what, error=error)
    raise error(
        f"{what} {value!r} is not a folder inside the allowed {what} roots; "
        f"known: {', '.join(known_corpora(roots)) or 'none'}"
    )


def _below(
    root: Path, candidate: Path, *, make: bool, value: str, what: str, error: type[Exception]
) -> Path:
    """A folder below `root` that may not exist yet.

    Every existing part must be a real folder (never a symlink); with `make`, the missing parts
    are made one by one.
    """
    current = root
    for part in candidate.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise error(f"{what} {value!r} is not a folder inside its root")
        if not current.exists():
            if not make:
                return candidate
            current.mkdir(mode=0o755)
    return current


def known_corpora(roots: Sequence[Path], limit: int = 20) -> list[str]:
    """Names a client may use: each root and its (non-hidden, non-symlink) subfolders."""
    names = {root.name for root in roots}
    for root in roots:
        try:
            names.update(
                child.name
                for child in root.iterdir()
                if child.is_dir() and not child.is_symlink() and not child.name.startswith(".")
            )
        except OSError:
            continue
    return sorted(names)[:limit]


def _candidates(pure: PurePath, roots: list[Path]) -> list[tuple[Path, Path]]:
    """Where `pure` may point, root by root; an absolute path only inside a root, lexically."""
    if pure.is_absolute():
        return [(root, Path(pure)) for root in roots if Path(pure).is_relative_to(root)]
    named = [(root, root.parent / pure) for root in roots if pure.parts[:1] == (root.name,)]
    return named + [(root, root / pure) for root in roots]
