"""`ensemble db upgrade`: prepare a database explicitly, once, safely twice.

On PostgreSQL nothing creates tables behind the operator's back: LangGraph's checkpoint tables
(its own migrations), the run queue's tables (pgqueuer's installer) and Ensemble's numbered
migrations (`migrations/*.sql`) are applied by this command, under an advisory lock so two
upgrades at once wait for each other, and recorded in `ensemble_schema`. Every process that opens
the database checks the version first and names the command when it is behind.

A SQLite file prepares itself on first use (one user, one file); the command does the same there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ensemble.db.url import Database
from ensemble.errors import DatabaseError

UPGRADE_LOCK = 0x656E73656D626C  # "ensembl": the advisory lock key of schema upgrades


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of `ensemble/db/migrations`."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this Ensemble, in order."""
    found = []
    for entry in resources.files("ensemble.db").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


LATEST = max(m.version for m in migrations())


@dataclass
class UpgradeReport:
    """What `ensemble db upgrade` did (printed, and `--json`)."""

    database: str
    before: int
    after: int
    applied: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "database": self.database,
            "version_before": self.before,
            "version": self.after,
            "applied": self.applied,
            "queue_statements": len(self.queue),
        }


async def upgrade(db: Database) -> UpgradeReport:
    """Bring `db` to this Ensemble's schema; a database already there is left unchanged."""
    if not db.is_postgres:
        return await _upgrade_sqlite(db)
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row

    from ensemble.db.postgres import CONNECT_TIMEOUT, explain

    try:
        conn = await psycopg.AsyncConnection.connect(
            db.dsn or "",
            autocommit=True,
            prepare_threshold=None,  # migrations are scripts of several statements
            row_factory=dict_row,
            connect_timeout=int(CONNECT_TIMEOUT),
        )
    except psycopg.Error as error:
        raise explain(db, error) from error
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))
        try:
            before = await _version(conn)
            if before > LATEST:
                raise DatabaseError(_newer(db, before))
            await AsyncPostgresSaver(conn).setup()  # LangGraph's own versioned migrations
            queue = await _upgrade_queue(db)
            applied = []
            for migration in migrations():
                if migration.version <= before:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)  # type: ignore[arg-type]
                    await conn.execute(
                        "INSERT INTO ensemble_schema (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(f"{migration.version:04d}_{migration.name}")
        except psycopg.Error as error:
            raise explain(db, error) from error
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))
    return UpgradeReport(str(db), before, LATEST, applied, queue)


async def _upgrade_queue(db: Database) -> list[str]:
    """Install or upgrade pgqueuer's tables (its own installer, on a connection it may script)."""
    import psycopg
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(db.dsn or "", autocommit=True) as conn:
        queries = Queries.from_psycopg_connection(conn)
        if not await queries.schema_is_installed():
            await queries.install()
            return ["installed"]
        return [str(s) for s in (await queries.apply_upgrade()).statements]


async def _version(conn: Any) -> int:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS ensemble_schema ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    row = await (await conn.execute("SELECT max(version) AS v FROM ensemble_schema")).fetchone()
    return int(row["v"] or 0)


async def require_current_async(conn: Any, db: Database) -> None:
    """Refuse a database that `ensemble db upgrade` has not brought to this version.

    Raises:
        DatabaseError: The schema is missing, older or newer, with the command that fixes it.
    """
    version = -1  # no table: never upgraded (a subquery on it would not even parse)
    cursor = await conn.execute("SELECT to_regclass('ensemble_schema') IS NOT NULL AS found")
    row = await cursor.fetchone()
    if (row["found"] if isinstance(row, dict) else row[0]) is True:
        cursor = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM ensemble_schema")
        row = await cursor.fetchone()
        version = int(row["v"] if isinstance(row, dict) else row[0])
    if version > LATEST:
        raise DatabaseError(_newer(db, version))
    if version < LATEST:
        state = "has no Ensemble schema" if version < 0 else f"is at schema version {version}"
        raise DatabaseError(
            f"database {db} {state}; this Ensemble needs version {LATEST}: "
            f"run `ensemble db upgrade --db {db}` once"
        )


def _newer(db: Database, version: int) -> str:
    return (
        f"database {db} was prepared by a newer Ensemble (schema version {version}, this one "
        f"knows {LATEST}): upgrade Ensemble"
    )


async def _upgrade_sqlite(db: Database) -> UpgradeReport:
    from ensemble.persistence import open_async_checkpointer

    async with open_async_checkpointer(db):
        pass  # the saver's own setup; Ensemble's tables are made on first use
    return UpgradeReport(str(db), LATEST, LATEST)
