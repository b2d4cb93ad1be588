"""The operator's choices: where the database lives and which corpus folders runs may read.

Only whoever starts Ensemble (the CLI's user, a notebook, `ensemble serve`) decides file
locations; nothing a run's input or context says can move them. Entry points set the process's
workspace once (`configure`); nodes ask it for the corpus a task names (`current().corpus(...)`),
and the corpus policy refuses folders outside the operator's roots before anything is read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ensemble import settings
from ensemble.corpus import CorpusIndex, open_corpus
from ensemble.corpus.access import resolve_corpus

SERVED_FLAG = "ENSEMBLE_SERVED"
"""Set to 1 in the server's environment: its runs come from clients, who choose no folders."""


@dataclass(frozen=True)
class Workspace:
    """Where one Ensemble process keeps its data, and what folders its runs may read."""

    db_path: Path
    """The SQLite file of checkpoints, the corpus index and (later) the audit trail."""
    corpus_roots: tuple[Path, ...] | None = None
    """Folders a corpus must lie in; None lets a run name any folder (the machine's own user)."""

    def __post_init__(self) -> None:
        """Accept plain strings for paths (notebooks), keep `Path`s inside."""
        object.__setattr__(self, "db_path", Path(self.db_path).expanduser())
        if self.corpus_roots is not None:
            roots = tuple(Path(r).expanduser().resolve() for r in self.corpus_roots)
            object.__setattr__(self, "corpus_roots", roots)

    def corpus_dir(self, name: str | None) -> Path | None:
        """The folder a run's `corpus` value names, checked against the roots (None: default).

        Raises:
            CorpusError: The folder is outside the roots, escapes them, or is not a folder.
        """
        return resolve_corpus(name, self.corpus_roots)

    def corpus(self, name: str | None) -> CorpusIndex:
        """The shared search index of the corpus `name` (checked) in this workspace's database."""
        return open_corpus(self.db_path, self.corpus_dir(name))


def from_environment(*, served: bool = False) -> Workspace:
    """The workspace `ENSEMBLE_DB` / `ENSEMBLE_CORPUS_ROOTS` describe.

    A served process (the LangGraph server) is restricted to the listed roots, and to the
    default corpus when none are listed; a local process may read any folder unless roots are set.
    """
    roots = settings.corpus_roots()
    if roots is None and served:
        roots = ()
    return Workspace(db_path=settings.db_path().resolve(), corpus_roots=roots)


_lock = threading.Lock()
_configured: Workspace | None = None


def configure(workspace: Workspace) -> None:
    """Set this process's workspace (entry points call it once, before running graphs)."""
    global _configured
    with _lock:
        _configured = workspace


def current() -> Workspace:
    """The configured workspace, else the one the environment describes.

    A process started by `ensemble serve` carries `ENSEMBLE_SERVED=1`, so even before any
    server module configures it, its runs are held to the operator's corpus roots.
    """
    with _lock:
        configured = _configured
    if configured is not None:
        return configured
    return from_environment(served=os.environ.get(SERVED_FLAG) == "1")


@contextmanager
def use(workspace: Workspace) -> Iterator[Workspace]:
    """Run a block with `workspace` in force, then restore the previous one (tests, notebooks)."""
    global _configured
    with _lock:
        previous, _configured = _configured, workspace
    try:
        yield workspace
    finally:
        with _lock:
            _configured = previous
