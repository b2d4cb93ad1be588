"""`ensemble worker`: take runs from the shared queue, run them fenced, lead when elected.

pgqueuer's QueueManager does the queue's part: it picks jobs with `FOR UPDATE SKIP LOCKED`, one
entrypoint per scenario (its `concurrency_limit` is a cluster-wide seat count, so a per-scenario
cap holds across machines), heart-beats every picked job, and hands a job whose heartbeat is older
than the stall timeout (the database's clock) to the next worker that asks. Ensemble's part: claim
the thread (raise its lease epoch), run it on a fenced connection, record how it ended, and give
up quietly when the epoch moved on (another worker took the thread over).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.models import Job
from pgqueuer.queries import Queries

from ensemble.cluster import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LEADER_LEASE,
    DEFAULT_STALL_TIMEOUT,
    runs,
    schedules,
)
from ensemble.cluster.execute import execute
from ensemble.cluster.leader import Leadership
from ensemble.cluster.lease import describe, fenced_saver
from ensemble.db import Database
from ensemble.events.announce import announce
from ensemble.workspace import Workspace

POLL = timedelta(seconds=0.5)
"""How often a full worker looks again for work (a new job wakes it at once by NOTIFY)."""

STATUS_OF = {"done": "done", "interrupted": "waiting", "failed": "failed"}
"""A run's result -> the thread's status in `ensemble_runs`."""


class _ListeningDriver(PsycopgDriver):
    """pgqueuer's psycopg driver with its queries on a second connection.

    The driver waits for NOTIFY with `notifies(timeout=1.0)`, which holds its connection's lock
    for that second: on one connection every pick after a notification or a finished job waited
    up to a second. Listening alone on its own connection, a new job is picked at once.
    """

    def __init__(
        self, listen: psycopg.AsyncConnection[Any], query: psycopg.AsyncConnection[Any]
    ) -> None:
        super().__init__(listen)
        self._queries = query

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        """Run a query on the query connection; return its rows as dicts."""
        from psycopg import AsyncRawCursor
        from psycopg.rows import dict_row

        cursor = AsyncRawCursor(self._queries, row_factory=dict_row)
        await cursor.execute(query, args or None)
        return await cursor.fetchall()

    async def execute(self, query: str, *args: object) -> str:
        """Run a statement on the query connection; return its status."""
        from psycopg import AsyncRawCursor

        cursor = AsyncRawCursor(self._queries)
        await cursor.execute(query, args or None)
        return cursor.statusmessage or ""


class _LimitedQueueManager(QueueManager):
    """A QueueManager that stops picking while `limit` of its jobs are running.

    pgqueuer's own per-worker cap must be at least twice its batch size; a worker of one run at a
    time (`--concurrency 1`) is a natural thing to ask for, so the cap is kept here instead.
    """

    limit: int = 1

    async def fetch_jobs(
        self, batch_size: int, global_concurrency_limit: int | None, heartbeat_timeout: timedelta
    ) -> AsyncGenerator[Job, None]:
        """Jobs while this worker has room; none when it is full."""
        if len(self.job_context) >= self.limit:
            return
        async for job in super().fetch_jobs(1, global_concurrency_limit, heartbeat_timeout):
            yield job
            if len(self.job_context) + 1 >= self.limit:
                return


@dataclass
class Worker:
    """One worker process: its queue manager, its leader candidacy, its runs."""

    db: Database
    workspace: Workspace
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    concurrency: int = DEFAULT_CONCURRENCY
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    leader_lease: float = DEFAULT_LEADER_LEASE
    scenarios: tuple[str, ...] = ()
    caps: dict[str, int] = field(default_factory=dict)
    say: Callable[[str], None] = print

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; then finish the runs in hand and return."""
        from ensemble.db.schema import require_current_async

        async with (
            await psycopg.AsyncConnection.connect(self.db.dsn or "", autocommit=True) as listen,
            await psycopg.AsyncConnection.connect(self.db.dsn or "", autocommit=True) as queue,
            await psycopg.AsyncConnection.connect(self.db.dsn or "", autocommit=True) as status,
        ):
            from psycopg.rows import dict_row

            status.row_factory = dict_row  # type: ignore[assignment]
            await require_current_async(status, self.db)
            self._status = status
            manager = _LimitedQueueManager(Queries(_ListeningDriver(listen, queue)))
            manager.limit = self.concurrency
            for scenario in self.scenarios:
                manager.entrypoint(
                    runs.entrypoint(scenario), concurrency_limit=self.caps.get(scenario, 0)
                )(self._job)
            leadership = Leadership(
                self.db,
                self.name,
                [self._fire_schedules, self._publish_scheduled_events, self._requeue_orphans],
                lease_seconds=self.leader_lease,
                say=self.say,
            )
            self.say(
                f"worker {self.name}: taking {', '.join(self.scenarios)} runs "
                f"(concurrency {self.concurrency}, stall timeout {self.stall_timeout:g} s)"
            )
            leading = asyncio.create_task(leadership.run())
            stopping = asyncio.create_task(self._stop_when(stop, manager, leading))
            try:
                await manager.run(
                    dequeue_timeout=POLL,
                    batch_size=1,
                    heartbeat_timeout=timedelta(seconds=self.stall_timeout),
                    log_aggregation_interval=timedelta(0),
                )
            finally:
                for task in (leading, stopping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.say(f"worker {self.name}: stopped")

    async def _stop_when(
        self, stop: asyncio.Event, manager: QueueManager, leading: asyncio.Task[None]
    ) -> None:
        await stop.wait()
        self.say(f"worker {self.name}: stopping after the runs in hand")
        leading.cancel()  # a stopping worker does not campaign: the post goes to another
        manager.shutdown.set()

    async def _job(self, job: Job) -> None:
        thread_id = str(json.loads(job.payload or b"{}").get("thread_id", ""))
        held = await runs.claim(self._status, thread_id, self.name)
        if held is None:
            return  # finished meanwhile: a job left over, nothing to do
        how = "taking over" if held.attempts > 1 else "starting"
        self.say(
            f"worker {self.name}: {how} thread {thread_id} ({held.scenario}, epoch {held.epoch})"
        )
        alive = asyncio.create_task(self._keep_alive(held))
        error: BaseException | None = None
        result = None
        try:
            async with fenced_saver(self.db, thread_id, held.epoch) as saver:
                result = await execute(saver, self.workspace, held)
                if await runs.current_epoch(self._status, thread_id) == held.epoch:
                    await announce(self.db, saver, result)  # before the row: a crash re-announces
        except Exception as failure:  # a bad request, a database gone: the run failed
            error = failure
        finally:
            alive.cancel()
        # The epoch is the truth: the fence refuses a write only after it moved on, and it
        # never moves back, so a refused write and a takeover both show here.
        if await runs.current_epoch(self._status, thread_id) != held.epoch:
            self.say(
                f"worker {self.name}: lost thread {thread_id} (epoch {held.epoch} is stale); "
                "another worker has it"
            )
            return
        if result is None:
            await runs.finish(self._status, held, "failed", describe(error))
            self.say(f"worker {self.name}: thread {thread_id} failed: {describe(error)}")
            return
        status = STATUS_OF.get(result.status, "failed")
        if await runs.finish(self._status, held, status, result.error):
            self.say(f"worker {self.name}: thread {thread_id} {status}")
        else:  # taken over between the last write and now: the new holder says how it ends
            self.say(f"worker {self.name}: lost thread {thread_id} (epoch {held.epoch} is stale)")

    async def _keep_alive(self, held: runs.Claim) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.stall_timeout / 3))
            with contextlib.suppress(psycopg.Error):
                await runs.touch(self._status, held)

    async def _fire_schedules(self, conn: psycopg.AsyncConnection[Any], epoch: int) -> None:
        for thread_id in await schedules.fire_due(conn, epoch):
            self.say(
                f"worker {self.name}: leader (epoch {epoch}) queued scheduled thread {thread_id}"
            )

    async def _publish_scheduled_events(
        self, conn: psycopg.AsyncConnection[Any], epoch: int
    ) -> None:
        from ensemble.events.schedules import fire_due

        for event in await asyncio.to_thread(fire_due, self.db, leader_epoch=epoch):
            self.say(
                f"worker {self.name}: leader (epoch {epoch}) published {event.type} ({event.id})"
            )

    async def _requeue_orphans(self, conn: psycopg.AsyncConnection[Any], epoch: int) -> None:
        for thread_id in await runs.requeue_orphans(conn, epoch, self.stall_timeout):
            self.say(f"worker {self.name}: leader (epoch {epoch}) re-queued thread {thread_id}")
