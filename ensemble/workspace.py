"""The operator's choices: where the database lives and which folders runs may read and write.

Only whoever starts Ensemble (the CLI's user, a notebook, `ensemble serve`) decides file
locations; nothing a run's input or context says can move them. A `Workspace` is given to a
scenario when its graph is built (`Scenario.build(workspace)`), and the nodes that need a
resource ask it: the corpus a task names (refused outside the operator's roots before anything
is read), the chat model of a role (its cache, budget ledger and audit trail in this database),
an audit record. There is no process-wide workspace: two in one process never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.corpus import CorpusIndex, open_corpus
from ensemble.corpus.access import inside_roots, resolve_corpus
from ensemble.db import Database, database
from ensemble.publishing import PublishError
from ensemble.publishing.publisher import refuse_symlinks
from ensemble.settings import DEFAULT_DB

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from ensemble.context import Context


@dataclass(frozen=True)
class Workspace:
    """Where one Ensemble process keeps its data, and what folders its runs may read."""

    db: Database
    """Checkpoints, audit trail, model cache and publish journal: a SQLite file or PostgreSQL."""
    corpus_roots: tuple[Path, ...] | None = None
    """Folders a corpus must lie in; None lets a run name any folder (the machine's own user)."""
    output_roots: tuple[Path, ...] | None = None
    """Folders published files may go to; None lets a run name any folder (the local user)."""

    def __post_init__(self) -> None:
        """Accept plain strings for paths (notebooks), keep `Path`s inside."""
        object.__setattr__(self, "db", database(self.db))
        for name in ("corpus_roots", "output_roots"):
            roots = getattr(self, name)
            if roots is not None:
                object.__setattr__(self, name, tuple(Path(r).expanduser().resolve() for r in roots))

    @property
    def db_path(self) -> Path:
        """The SQLite file (notebooks, tests); an error when the database is PostgreSQL."""
        return self.db.sqlite_path

    @property
    def default_output(self) -> Path:
        """Where published pieces go when a run names no folder.

        `published/` beside a SQLite file; in the default data folder (`.ensemble/`) on PostgreSQL.
        """
        if self.db.is_postgres:
            return Path(DEFAULT_DB).parent.resolve() / "published"
        return self.db.sqlite_path.resolve().parent / "published"

    def corpus_dir(self, name: str | None) -> Path | None:
        """The folder a run's `corpus` value names, checked against the roots (None: default).

        Raises:
            CorpusError: The folder is outside the roots, escapes them, or is not a folder.
        """
        return resolve_corpus(name, self.corpus_roots)

    def output_dir(self, name: str | None, *, create: bool = False) -> Path:
        """The folder a run's `output_dir` names, checked against the output roots.

        None means the default folder. A local user may name any folder (made when `create`);
        a served client only a folder inside the roots (a missing subfolder is made there).

        Raises:
            PublishError: The folder is outside the roots, escapes them, or is not a folder.
        """
        if name is None or not str(name).strip():
            folder = self.default_output
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            return folder
        if self.output_roots is None:
            folder = Path(name).expanduser()
            refuse_symlinks(folder)  # never written through a link, at any depth
            if folder.exists() and not folder.is_dir():
                raise PublishError(f"output_dir {folder} is not a folder")
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            return folder.absolute()
        roots = list(self.output_roots)
        if not roots:
            raise PublishError(
                "this server publishes only into its default folder: the operator has allowed "
                "no output folders (ensemble serve --output-root DIR)"
            )
        return inside_roots(str(name), roots, what="output_dir", error=PublishError, create=create)

    def corpus(self, name: str | None) -> CorpusIndex:
        """The shared search index of the corpus `name` (checked).

        It lives in the SQLite file; on PostgreSQL each process keeps it in memory (documents are
        local files, indexed in seconds), so nothing is written outside the operator's database.
        """
        index_db = ":memory:" if self.db.is_postgres else self.db.sqlite_path
        return open_corpus(index_db, self.corpus_dir(name))

    def chat_model(self, context: Context, role: str, spec: str | None = None) -> BaseChatModel:
        """The model that plays `role` (or `spec`), with its cache, budget and audit here."""
        from ensemble.models import chat_model_for

        return chat_model_for(context, role, spec, db=self.db)

    def audit(self, kind: str, agent: str, **detail: Any) -> None:
        """Record an agent's action (not a model call) in this workspace's audit trail."""
        from ensemble.audit.actions import audit

        audit(kind, agent, db=self.db, **detail)


def from_environment(*, served: bool = False) -> Workspace:
    """The workspace `ENSEMBLE_DB` / `ENSEMBLE_CORPUS_ROOTS` describe.

    A served process (the LangGraph server) is restricted to the listed roots, and to the
    default corpus when none are listed; a local process may read any folder unless roots are set.
    """
    from ensemble import settings

    roots = settings.corpus_roots()
    outputs = settings.output_roots()
    if served:
        roots = () if roots is None else roots
        outputs = () if outputs is None else outputs
    db = database()
    if not db.is_postgres:
        db = Database(kind="sqlite", path=db.sqlite_path.resolve())
    return Workspace(db=db, corpus_roots=roots, output_roots=outputs)
