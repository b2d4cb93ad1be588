"""Parse the operator's `--db` / `ENSEMBLE_DB` value into a `Database`.

A value is a SQLite path (`runs.db`, `sqlite:runs.db`) or a PostgreSQL URL (`postgresql://...`).
Only the operator chooses it; nothing a run or a client sends reaches this parser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union
from urllib.parse import urlsplit, urlunsplit

from ensemble.errors import DatabaseError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Database:
    """One database: a SQLite file or a PostgreSQL connection string."""

    kind: Literal["sqlite", "postgresql"]
    path: Path | None = None
    """The SQLite file (None for PostgreSQL)."""
    dsn: str | None = None
    """The PostgreSQL connection URL, password included (None for SQLite)."""

    @property
    def is_postgres(self) -> bool:
        """Whether this is a PostgreSQL database (shared by many processes and machines)."""
        return self.kind == "postgresql"

    @property
    def url(self) -> str:
        """The value that names this database again (`ENSEMBLE_DB` for a child process)."""
        return self.dsn if self.dsn is not None else str(self.path)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file; a clear error where a file is needed and the database is PostgreSQL."""
        if self.path is None:
            raise DatabaseError(f"{self} is a PostgreSQL database, not a SQLite file")
        return self.path

    def __str__(self) -> str:
        """A printable name: the path, or the URL with its password hidden."""
        if self.dsn is None:
            return str(self.path)
        parts = urlsplit(self.dsn)
        if parts.password is None:
            return self.dsn
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


DatabaseLike = Union["Database", str, os.PathLike[str]]
"""What a function that opens a database accepts: a `Database`, a path or a URL."""


def database(value: DatabaseLike | None = None) -> Database:
    """The database `value` names; None means `ENSEMBLE_DB`, then the default file.

    Raises:
        DatabaseError: A URL that is neither a SQLite path nor a PostgreSQL URL.
    """
    if isinstance(value, Database):
        return value
    if value is None:
        from ensemble import settings

        value = settings.db_value()
    text = os.fspath(value).strip()
    if not text:
        raise DatabaseError("the database is empty: give a SQLite path or a postgresql:// URL")
    if text.startswith(POSTGRES_SCHEMES):
        return Database(kind="postgresql", dsn=_checked_dsn(text))
    if text.startswith("sqlite:"):
        text = text.removeprefix("sqlite:")
        text = text.removeprefix("//") if text.startswith("///") else text
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise DatabaseError(
            f"unknown database scheme {scheme!r}: use a SQLite path or a postgresql:// URL"
        )
    if text == ":memory:":
        return Database(kind="sqlite", path=Path(text))
    return Database(kind="sqlite", path=Path(text).expanduser())


def _checked_dsn(text: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(text)
    except Exception as error:  # psycopg.ProgrammingError, with the reason in its text
        raise DatabaseError(f"not a valid PostgreSQL URL: {error}") from None
    return text
