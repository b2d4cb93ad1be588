"""A real `langgraph dev` server on 127.0.0.1, started the way `ensemble serve` starts it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ensemble import processes
from ensemble.cli import serve
from ensemble.server.policy import ServerPolicy
from tests.corpus import write_corpus
from tests.databases import DATABASES, database_for

STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Server:
    """A running dev server and what tests need to talk to it and to its database."""

    url: str
    db: str
    """The `--db` value: a SQLite path or a PostgreSQL URL."""
    corpus: Path
    log: Path


def tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:] if log.exists() else ""


SLOW_MODEL = "offline?latency=2"
"""A model the dev server's operator offers its clients, for runs that must take a while."""


def served_access(workdir: Path) -> serve.ServerAccess:
    """Corpora under `workdir`; the offline model, and a slow one, offered to clients."""
    policy = ServerPolicy(default_model="offline", models=(SLOW_MODEL,))
    return serve.ServerAccess(corpus_roots=(workdir,), policy=policy)


@pytest.fixture(scope="module", params=DATABASES, ids=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One dev server per module and database: temp working directory, offline model."""
    workdir = tmp_path_factory.mktemp("devserver")
    corpus = write_corpus(workdir / "corpus")
    db = database_for(request, workdir)
    config = serve.server_config(workdir)
    port = processes.free_port()
    log = workdir / "server.log"
    command = serve.server_command(port, jobs=4, config=config)
    env = serve.server_env(db, "offline", access=served_access(workdir))
    url = serve.server_url(port)
    with processes.start(command, log, cwd=workdir, env=env) as child:
        child.wait_ready(f"{url}/ok", STARTUP_TIMEOUT)
        yield Server(url=url, db=db, corpus=corpus, log=log)
