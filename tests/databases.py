"""The two databases the end-to-end and server tests run on: a SQLite file and PostgreSQL.

A test or fixture parametrised over `DATABASES` gets a `--db` / `ENSEMBLE_DB` value: a file path
for SQLite, or the URL of a new PostgreSQL database already prepared by `ensemble db upgrade`'s
own code (nothing prepares a PostgreSQL database behind the operator's back).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from ensemble.db import database
from ensemble.db.schema import upgrade

DATABASES = ("sqlite", "postgresql")


def is_postgres(db: str) -> bool:
    """Whether the `--db` value names a PostgreSQL database."""
    return database(db).is_postgres


def upgraded(url: str) -> str:
    """`url`, brought to this Ensemble's schema as `ensemble db upgrade --db URL` does."""
    asyncio.run(upgrade(database(url)))
    return url


def database_for(request: pytest.FixtureRequest, folder: Path) -> str:
    """The `--db` value of a fixture of any scope parametrised over `DATABASES`.

    SQLite: `folder/ensemble.db` (made on first use). PostgreSQL: a new database on the session's
    cluster, upgraded.
    """
    if request.param == "sqlite":
        return str(folder / "ensemble.db")
    server = request.getfixturevalue("postgres_server")
    return upgraded(server.new_database(f"test_{uuid.uuid4().hex[:16]}"))
