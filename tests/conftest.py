"""Shared fixtures: an offline environment, small corpora, checkpointers, scripted models."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from ensemble.corpus import open_corpus
from ensemble.models import register_model, unregister_model
from ensemble.persistence import open_async_checkpointer
from ensemble.server.policy import served_workspace
from ensemble.workspace import Workspace
from tests.corpus import write_corpus


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reaches a real model or the user's database; each starts unconfigured."""
    monkeypatch.setenv("ENSEMBLE_MODEL", "offline")
    monkeypatch.setenv("ENSEMBLE_CACHE", "0")  # scripted models must be called; cache tests opt in
    monkeypatch.setenv("ENSEMBLE_DB", str(tmp_path / "default.db"))
    for name in (
        "ENSEMBLE_CORPUS_ROOTS",
        "ENSEMBLE_OUTPUT_ROOTS",
        "ENSEMBLE_API_KEYS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    served_workspace.cache_clear()  # a served process reads its workspace once; each test anew
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The operator's workspace of a test: its own database, any folder readable."""
    return Workspace(db=tmp_path / "default.db")


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A small folder corpus about bees."""
    return write_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def default_corpus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with Python's documentation indexed once for the whole session."""
    db = tmp_path_factory.mktemp("default-corpus") / "ensemble.db"
    index = open_corpus(db)
    index.ensure()
    index.close()
    return db


@pytest.fixture
def db_with_default_corpus(default_corpus_db: Path, tmp_path: Path) -> Path:
    """A private copy of the pre-indexed database."""
    db = tmp_path / "ensemble.db"
    shutil.copy(default_corpus_db, db)
    return db


@pytest.fixture(params=["memory", "sqlite"])
async def checkpointer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator:
    """Every graph test runs on both checkpointers."""
    if request.param == "memory":
        yield InMemorySaver()
    else:
        async with open_async_checkpointer(tmp_path / "checkpoints.db") as saver:
            yield saver


@pytest.fixture(params=["sync", "async", "exit"])
def durability(request: pytest.FixtureRequest) -> str:
    """LangGraph's durability modes: save before each step, alongside it, or only at the end."""
    return str(request.param)


@pytest.fixture
def register() -> Iterator:
    """Register scripted models under unique names; returns a function name -> spec."""
    names: list[str] = []

    def _register(model) -> str:
        name = f"scripted-{uuid.uuid4().hex[:8]}"
        register_model(name, model)
        names.append(name)
        return name

    yield _register
    for name in names:
        unregister_model(name)


from tests.postgres_server import PostgresServer  # noqa: E402  (kept with the fixtures that use it)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 cluster, started only when a test of the session asks for one."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new empty database on the session's cluster, one per test."""
    return postgres_server.new_database(f"test_{uuid.uuid4().hex[:16]}")


from tests.databases import DATABASES, upgraded  # noqa: E402  (kept with the fixture that uses it)


@pytest.fixture(params=DATABASES, ids=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The `--db` / `ENSEMBLE_DB` of a test that must hold on SQLite and on PostgreSQL.

    SQLite: a file in tmp_path (made on first use). PostgreSQL: a new database from
    `postgres_url`, already prepared as `ensemble db upgrade` prepares it.
    """
    if request.param == "sqlite":
        return str(tmp_path / "ensemble.db")
    return upgraded(str(request.getfixturevalue("postgres_url")))
