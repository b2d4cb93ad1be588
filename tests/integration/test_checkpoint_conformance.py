"""LangGraph's checkpoint conformance suite on both savers, opened exactly as Ensemble opens them.

Resume, fork and time travel stand on the saver's put / put_writes / get_tuple / list /
delete_thread behaving as LangGraph expects; the suite from `langgraph-checkpoint-conformance`
checks that on the SQLite file and on a real PostgreSQL 15 server. Optional capabilities
(prune, copy_thread, delete_for_runs) are run where the saver implements them: all three on
Ensemble's SQLite saver (`ensemble.db.sqlite_saver`), prune on LangGraph's PostgreSQL saver.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from langgraph.checkpoint.conformance.report import CapabilityReport, ProgressCallbacks
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from ensemble.db import database
from ensemble.db.postgres import open_async_saver
from ensemble.persistence import open_async_checkpointer
from tests.postgres_server import HOST, PostgresServer

pytestmark = pytest.mark.integration


async def assert_conforms(registered: RegisteredCheckpointer) -> CapabilityReport:
    """Run the whole suite; fail on any failed capability or any base one not run."""
    report = await validate(registered, progress=ProgressCallbacks.verbose())
    report.print_report()
    results = report.results.items()
    failed = {name: result.failures for name, result in results if result.passed is False}
    assert not failed, f"{registered.name} failed conformance: {failed}"
    assert report.passed_all_base(), f"{registered.name} did not run every base capability"
    return report


async def test_the_sqlite_saver_conforms(tmp_path: Path) -> None:
    @checkpointer_test(name="ensemble SQLite (AsyncSqliteSaver)")
    async def sqlite_saver() -> AsyncGenerator[AsyncSqliteSaver, None]:
        async with open_async_checkpointer(tmp_path / "checkpoints.db") as saver:
            assert isinstance(saver, AsyncSqliteSaver)
            yield saver

    report = await assert_conforms(sqlite_saver)
    for capability in ("prune", "delete_for_runs", "copy_thread"):
        result = report.results[capability]
        assert result.detected and result.passed is True, (capability, result)


async def test_the_postgres_saver_conforms(postgres_url: str) -> None:
    db = database(postgres_url)

    async def migrated_database() -> AsyncGenerator[None, None]:
        async with open_async_saver(db, check_schema=False) as saver:
            await saver.setup()
        yield

    @checkpointer_test(name="ensemble PostgreSQL (AsyncPostgresSaver)", lifespan=migrated_database)
    async def postgres_saver() -> AsyncGenerator[AsyncPostgresSaver, None]:
        async with open_async_saver(db, check_schema=False) as saver:
            yield saver

    await assert_conforms(postgres_saver)


def test_the_test_server_is_postgresql_15_on_loopback_and_leaves_nothing_behind() -> None:
    server = PostgresServer()
    server.start()
    try:
        base_dir, port = server.base_dir, server.port
        with psycopg.connect(server.url) as conn:
            row = conn.execute(
                "SELECT version(), host(inet_server_addr()), current_user, current_database()"
            ).fetchone()
    finally:
        server.stop()
    assert row is not None
    version, address, user, name = row
    assert version.startswith("PostgreSQL 15."), version
    assert (address, user, name) == (HOST, "ensemble", "ensemble")
    assert base_dir is not None and not base_dir.exists()
    assert port is not None
    with pytest.raises(ConnectionRefusedError), socket.create_connection((HOST, port), timeout=5):
        pass


def test_each_test_gets_an_empty_database_of_its_own(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert postgres_url != postgres_server.url
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert row == (0,)
