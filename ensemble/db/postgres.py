"""PostgreSQL connections: the official async saver on a pool, and short sync connections.

The saver is LangGraph's own `AsyncPostgresSaver` on a psycopg `AsyncConnectionPool` configured
as its documentation asks (autocommit, no prepared statements, dict rows). Ensemble's own tables
(audit trail, model cache, publish journal) use a small sync pool per process, so a model call's
cache lookup does not pay for a new connection.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from ensemble.db.url import Database
from ensemble.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the server before saying it cannot be reached."""

SAVER_POOL_SIZE = 10
"""Connections one process's async saver may hold (the dev server, a worker's runs)."""

_SAVER_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0}


def explain(db: Database, error: Exception) -> DatabaseError:
    """A one-line message for a PostgreSQL failure, naming the database without its password."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DatabaseError(f"cannot use database {db}: {text}")


async def open_pooled_saver(db: Database, *, check_schema: bool = True) -> AsyncPostgresSaver:
    """LangGraph's `AsyncPostgresSaver` on a new pool; close it with `await saver.conn.close()`.

    Raises:
        DatabaseError: The server cannot be reached, or `ensemble db upgrade` has not been run.
    """
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.dsn or "",
        min_size=1,
        max_size=SAVER_POOL_SIZE,
        kwargs={**_SAVER_KWARGS, "row_factory": dict_row},
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        if check_schema:
            from ensemble.db.schema import require_current_async

            async with pool.connection() as conn:
                await require_current_async(conn, db)
    except BaseException as error:
        await pool.close()
        if isinstance(error, DatabaseError) or not isinstance(error, Exception):
            raise
        raise explain(db, error) from error
    from ensemble.db.postgres_saver import EnsemblePostgresSaver

    return EnsemblePostgresSaver(pool)  # type: ignore[arg-type]


@asynccontextmanager
async def open_async_saver(
    db: Database, *, check_schema: bool = True
) -> AsyncIterator[AsyncPostgresSaver]:
    """Yield LangGraph's `AsyncPostgresSaver` on a connection pool, closed afterwards."""
    saver = await open_pooled_saver(db, check_schema=check_schema)
    try:
        yield saver
    finally:
        await saver.conn.close()  # type: ignore[union-attr]


@contextmanager
def open_sync_saver(db: Database) -> Iterator[PostgresSaver]:
    """Yield LangGraph's sync `PostgresSaver` on one connection (inspection off the event loop)."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    try:
        conn = psycopg.connect(
            db.dsn or "",
            connect_timeout=int(CONNECT_TIMEOUT),
            row_factory=dict_row,
            **_SAVER_KWARGS,
        )
    except psycopg.Error as error:
        raise explain(db, error) from error
    with conn:
        yield PostgresSaver(conn)  # type: ignore[arg-type]


_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()


@contextmanager
def connection(db: Database) -> Iterator[psycopg.Connection[Any]]:
    """A sync autocommit connection from this process's pool for `db`."""
    import psycopg

    pool = _pool(db)
    try:
        with pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            yield conn
    except psycopg.OperationalError as error:
        raise explain(db, error) from error


def _pool(db: Database) -> Any:
    from psycopg_pool import ConnectionPool

    key = db.dsn or ""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                key,
                min_size=0,
                max_size=4,
                kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT)},
                open=True,
                name="ensemble-tables",
                # A connection the server ended (a restart, a failover) is replaced on checkout
                # instead of failing the next statement of a long-lived process.
                check=ConnectionPool.check_connection,
            )
            _pools[key] = pool
        return pool


def close_pools() -> None:
    """Close this process's sync pools (at exit; tests that stop a database)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _forget_pools() -> None:
    """A forked child must not share its parent's sockets: start with no pools."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)
atexit.register(close_pools)
