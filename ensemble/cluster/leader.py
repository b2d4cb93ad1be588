"""One leader among the workers: an advisory lock, a lease, and an epoch as fencing token.

Each worker tries `pg_try_advisory_lock` on its own session; the one that gets it raises the
epoch in `ensemble_leader` and is the leader. The session carries `idle_session_timeout` equal
to the lease: the leader renews by working every second, so a leader that dies or freezes (its
socket still open) is cut off by the server after the lease, its lock released, and another
worker takes over within lease + one poll. Whatever the leader changes is checked against its
epoch in the same transaction, so a frozen leader that wakes up changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ensemble.db import Database

log = logging.getLogger("ensemble.worker")

LEADER_LOCK = 0x656E735F6C6561  # "ens_lea": the advisory lock key of the leader's post
POLL_SECONDS = 1.0

Duty = Callable[[psycopg.AsyncConnection[Any], int], Awaitable[None]]
"""Work done by the leader each second, given its connection and epoch."""


class Leadership:
    """Competes for the leader's post, and while holding it does the duties every second."""

    def __init__(
        self,
        db: Database,
        worker: str,
        duties: list[Duty],
        *,
        lease_seconds: float = 10.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.db = db
        self.worker = worker
        self.duties = duties
        self.lease_seconds = lease_seconds
        self.say = say
        self.epoch: int | None = None
        """The epoch while this worker leads, else None."""

    async def run(self) -> None:
        """Forever: connect, try for the post, lead while it lasts; reconnect after a failure."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                if self.epoch is not None:
                    self.say(
                        f"worker {self.worker}: no longer leader (epoch {self.epoch}): stopped"
                    )
                    self.epoch = None
                raise
            except Exception as error:  # the session was cut (lease expired) or the db is away
                self._lost(error)
            await asyncio.sleep(POLL_SECONDS)

    async def _session(self) -> None:
        timeout_ms = int(self.lease_seconds * 1000)
        async with await psycopg.AsyncConnection.connect(
            self.db.dsn or "", autocommit=True, row_factory=dict_row
        ) as conn:
            await conn.execute(f"SET idle_session_timeout = {timeout_ms}")
            await conn.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
            while self.epoch is None:
                cursor = await conn.execute(
                    "SELECT pg_try_advisory_lock(%s) AS got", (LEADER_LOCK,)
                )
                row = await cursor.fetchone()
                if row and row["got"]:
                    cursor = await conn.execute(
                        "UPDATE ensemble_leader SET epoch = epoch + 1, worker = %s, "
                        "since = now() WHERE id = 1 RETURNING epoch",
                        (self.worker,),
                    )
                    won = await cursor.fetchone()
                    self.epoch = int(won["epoch"]) if won else None
                    if self.epoch is not None:
                        self.say(f"worker {self.worker}: leader (epoch {self.epoch})")
                    break
                await asyncio.sleep(POLL_SECONDS)
            while True:
                cursor = await conn.execute("SELECT epoch FROM ensemble_leader WHERE id = 1")
                now = await cursor.fetchone()
                if now is None or int(now["epoch"]) != self.epoch:
                    raise RuntimeError(f"the leader's epoch moved on to {now and now['epoch']}")
                for duty in self.duties:
                    await duty(conn, self.epoch)  # type: ignore[arg-type]
                await conn.execute("SELECT 1")  # renews the session inside its idle timeout
                await asyncio.sleep(POLL_SECONDS)

    def _lost(self, error: BaseException) -> None:
        if self.epoch is not None:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "session ended"
            self.say(f"worker {self.worker}: no longer leader (epoch {self.epoch}): {reason}")
        else:
            log.debug("leader session failed: %s", error)
        self.epoch = None
