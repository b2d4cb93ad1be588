"""`ensemble events run`: route events to subscriptions and start each delivery's run, once.

One loop, on either database:

1. fire due schedules (SQLite; on PostgreSQL the workers' leader does) and scan the watched
   folders (new or changed documents become events);
2. route unrouted events (`routing`): one delivery per matching subscription, in one
   transaction with marking the event routed, so a crash routes it again from scratch;
3. start the due deliveries, highest priority first, within each subscription's cap:
   - SQLite: this process runs them (at most `concurrency` at once), on the same checkpoints as
     `ensemble run`. One dispatcher per file (a lease row); a restarted one finds the
     deliveries its predecessor had started and goes on with their threads: a thread that has
     checkpoints continues from them, one that finished is only recorded, so no run starts twice.
   - PostgreSQL: the delivery is marked started and its run queued for the workers in one
     transaction; the run's row on the queue says how it ended. Any number of dispatchers
     share the work (`SKIP LOCKED`); a publish wakes them by NOTIFY.
4. record how runs ended: done, waiting for a person, or failed (retried after a backoff that
   doubles, dead-lettered with the reason after `max_attempts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble.db import Database
from ensemble.db.tables import write_transaction
from ensemble.errors import DatabaseError, InvalidInputError
from ensemble.events import DEFAULT_CONCURRENCY, DEFAULT_WATCH_INTERVAL
from ensemble.events.routing import BATCH, route_pending
from ensemble.events.schedules import fire_due
from ensemble.events.store import CHANNEL, event_tables
from ensemble.events.subscriptions import Subscription
from ensemble.events.watch import scan
from ensemble.workspace import Workspace

LEASE_SECONDS = 10.0
"""A SQLite dispatcher silent this long (or whose process is gone) gives up its post."""
BEAT_SECONDS = 2.0
MAX_BACKOFF = 3600.0
RETRY_SECONDS = 1.0
"""Pause after a database error before the dispatcher tries again."""


@dataclass(frozen=True)
class Due:
    """A delivery the dispatcher starts now."""

    event_id: str
    subscription: str
    scenario: str
    thread_id: str
    attempts: int
    max_attempts: int
    backoff: float
    request: dict[str, Any]
    priority: int = 0


def next_step(
    due_attempts: int, max_attempts: int, backoff: float, outcome: str, error: str | None
) -> tuple[str, float, str | None]:
    """(status, next_at, error) of a delivery whose run ended with `outcome`.

    done -> done; waiting -> waiting; failed -> pending again after `backoff * 2**(n-1)` seconds,
    or dead once `max_attempts` runs have failed.
    """
    now = time.time()
    if outcome in ("done", "waiting"):
        return outcome, now, None
    reason = error or "the run failed"
    if due_attempts < max_attempts:
        return "pending", now + min(backoff * 2 ** (due_attempts - 1), MAX_BACKOFF), reason
    return "dead", now, f"failed {due_attempts} time(s); last: {reason}"


DUE_SQL = (
    "SELECT event_id, subscription, scenario, thread_id, attempts, max_attempts, backoff, "
    "request, priority FROM ensemble_deliveries WHERE status = 'pending' AND next_at <= ? "
    "ORDER BY priority DESC, created_at, event_id LIMIT ?"
)
BUSY_SQL = (
    "SELECT subscription, COUNT(*) FROM ensemble_deliveries WHERE status = 'started' "
    "GROUP BY subscription"
)
START_SQL = (
    "UPDATE ensemble_deliveries SET status = 'started', attempts = attempts + 1, "
    "started_at = ?, updated_at = ? WHERE event_id = ? AND subscription = ?"
)
SETTLE_SQL = (
    "UPDATE ensemble_deliveries SET status = ?, next_at = ?, error = ?, updated_at = ? "
    "WHERE event_id = ? AND subscription = ? AND status = 'started'"
)


def choose(
    rows: Sequence[Sequence[Any]], busy: dict[str, int], caps: dict[str, int], room: int
) -> list[Due]:
    """The due rows to start now: in order, at most `room`, each subscription within its cap.

    A delivery whose subscription is no longer loaded gets a cap of one.
    """
    busy = dict(busy)
    chosen: list[Due] = []
    for row in rows:
        name = row[1]
        if len(chosen) >= room or busy.get(name, 0) >= caps.get(name, 1):
            continue
        busy[name] = busy.get(name, 0) + 1
        chosen.append(
            Due(row[0], name, row[2], row[3], int(row[4]) + 1, int(row[5]), float(row[6]),
                json.loads(row[7]), int(row[8]))
        )  # fmt: skip
    return chosen


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


@dataclass
class Dispatcher:
    """One dispatcher: its database, folders, subscriptions and (SQLite) its runs in hand."""

    db: Database
    workspace: Workspace
    subscriptions: Sequence[Subscription]
    watch: Sequence[Path] = ()
    watch_interval: float = DEFAULT_WATCH_INTERVAL
    concurrency: int = DEFAULT_CONCURRENCY
    poll: float = 0.1
    say: Callable[[str], None] = print
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _watched_at: float = field(default=0.0, init=False)
    _beat_at: float = field(default=0.0, init=False)

    @property
    def caps(self) -> dict[str, int]:
        """Runs at once per subscription."""
        return {s.name: s.concurrency for s in self.subscriptions}

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set; a SQLite dispatcher then finishes the runs in hand."""
        names = ", ".join(s.name for s in self.subscriptions) or "none"
        folders = ", ".join(str(f) for f in self.watch)
        self.say(
            f"dispatcher: {len(self.subscriptions)} subscription(s) ({names})"
            + (f", watching {folders}" if folders else "")
        )
        if self.db.is_postgres:
            await self._run_postgres(stop)
        else:
            await self._run_sqlite(stop)
        self.say("dispatcher: stopped")

    # --- both databases -------------------------------------------------------------------

    def housekeeping(self) -> int:
        """Fire due schedules (SQLite), scan watched folders, route events; how many routed."""
        if not self.db.is_postgres:  # on PostgreSQL the workers' leader fires them
            for event in fire_due(self.db):
                self.say(f"dispatcher: schedule published {event.type} ({event.id})")
        with event_tables(self.db) as conn:
            if self.watch and time.monotonic() - self._watched_at >= self.watch_interval:
                self._watched_at = time.monotonic()
                for folder in self.watch:
                    with write_transaction(conn):
                        for event in scan(conn, folder):
                            self.say(f"dispatcher: {event.data['name']} {event.data['change']}")
            waiting = conn.execute(
                "SELECT 1 FROM ensemble_events WHERE routed = 0 LIMIT 1"
            ).fetchone()
            if not waiting:
                return 0
            with write_transaction(conn):
                routed = route_pending(conn, self.subscriptions, self.workspace)
        return len(routed)

    def _say_outcome(self, due: Due, status: str, next_at: float, error: str | None) -> None:
        label = f"dispatcher: {due.subscription} <- {due.event_id}"
        if status == "pending":
            self.say(f"{label}: failed, retry in {max(next_at - time.time(), 0):.1f} s: {error}")
        elif status == "dead":
            self.say(f"{label}: dead: {error}")
        else:
            self.say(f"{label}: {status} (thread {due.thread_id})")

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._wake.clear()

    # --- SQLite: this process runs the deliveries ---------------------------------------

    async def _run_sqlite(self, stop: asyncio.Event) -> None:
        from ensemble.persistence import open_async_checkpointer

        await asyncio.to_thread(self._take_post)
        try:
            again = await asyncio.to_thread(self._recover)
            if again:
                self.say(f"dispatcher: going on with {again} delivery(ies) started before a stop")
            async with open_async_checkpointer(self.db) as saver:
                tasks: set[asyncio.Task[None]] = set()
                try:
                    while not stop.is_set():
                        try:
                            await asyncio.to_thread(self._beat)
                            routed = await asyncio.to_thread(self.housekeeping)
                            room = self.concurrency - len(tasks)
                            claimed = await asyncio.to_thread(self._claim_sqlite, room)
                        except DatabaseError as error:  # locked for long, a disk hiccup
                            self.say(f"dispatcher: {error}; trying again in {RETRY_SECONDS:g} s")
                            await self._sleep(stop, RETRY_SECONDS)
                            continue
                        for due in claimed:
                            task = asyncio.create_task(self._execute(saver, due))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                            task.add_done_callback(lambda _: self._wake.set())
                        if routed < BATCH:  # a full batch: more are waiting, go on at once
                            await self._sleep(stop, self.poll)
                finally:
                    if tasks:
                        self.say(f"dispatcher: finishing {len(tasks)} run(s) in hand")
                        await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await asyncio.to_thread(self._leave_post)

    def _claim_sqlite(self, room: int) -> list[Due]:
        if room <= 0:
            return []
        with event_tables(self.db) as conn:
            due = conn.execute(
                "SELECT 1 FROM ensemble_deliveries WHERE status = 'pending' AND next_at <= ? "
                "LIMIT 1",
                (time.time(),),
            ).fetchone()
            if not due:
                return []
            with write_transaction(conn):
                now = time.time()
                rows = conn.execute(DUE_SQL, (now, room * 4)).fetchall()
                chosen = choose(rows, dict(conn.execute(BUSY_SQL).fetchall()), self.caps, room)
                for due in chosen:
                    conn.execute(START_SQL, (now, now, due.event_id, due.subscription))
                return chosen

    async def _execute(self, saver: Any, due: Due) -> None:
        from ensemble.cluster.execute import execute
        from ensemble.cluster.lease import describe
        from ensemble.cluster.runs import Claim
        from ensemble.events.announce import announce

        self.say(
            f"dispatcher: {due.subscription} <- {due.event_id}: "
            f"{'starting' if due.attempts == 1 else f'attempt {due.attempts} of'} "
            f"{due.scenario} thread {due.thread_id}"
        )
        held = Claim(due.thread_id, due.scenario, 0, due.attempts, due.request)
        reason: str | None
        try:
            result = await execute(saver, self.workspace, held)
        except Exception as error:  # a database gone, a bad request: this attempt failed
            outcome, reason = "failed", describe(error)
        else:
            await announce(self.db, saver, result)  # before settling: a crash re-announces
            outcome = {"interrupted": "waiting"}.get(result.status, result.status)
            reason = result.error
        step = next_step(due.attempts, due.max_attempts, due.backoff, outcome, reason)
        while True:  # the run's outcome is known: keep it until the database takes it
            try:
                await asyncio.to_thread(self._settle, due, step)
                break
            except DatabaseError as error:
                self.say(f"dispatcher: {error}; recording {due.event_id} again shortly")
                await asyncio.sleep(RETRY_SECONDS)
        self._say_outcome(due, *step)

    def _settle(self, due: Due, step: tuple[str, float, str | None]) -> None:
        status, next_at, error = step
        with event_tables(self.db) as conn, write_transaction(conn):
            conn.execute(
                SETTLE_SQL, (status, next_at, error, time.time(), due.event_id, due.subscription)
            )

    def _recover(self) -> int:
        """Deliveries a stopped dispatcher had started go back to pending, their try not counted.

        Their threads keep their checkpoints: starting them again goes on from there.
        """
        with event_tables(self.db) as conn, write_transaction(conn):
            cursor = conn.execute(
                "UPDATE ensemble_deliveries SET status = 'pending', next_at = ?, "
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                "WHERE status = 'started'",
                (time.time(),),
            )
            return int(cursor.rowcount)

    def _take_post(self) -> None:
        """Become this SQLite file's one dispatcher, or say who is.

        Raises:
            InvalidInputError: Another live dispatcher holds the post.
        """
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with event_tables(self.db) as conn, write_transaction(conn):
            row = conn.execute(
                "SELECT host, pid, beat FROM ensemble_dispatcher WHERE id = 1"
            ).fetchone()
            if row is not None and (row[0], row[1]) != (host, pid) and _alive(row, now):
                raise InvalidInputError(
                    f"another dispatcher (pid {row[1]} on {row[0]}) is running on {self.db}; "
                    "one dispatcher per SQLite file"
                )
            conn.execute(
                "INSERT INTO ensemble_dispatcher (id, host, pid, beat) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "beat = excluded.beat",
                (host, pid, now),
            )
        self._beat_at = time.monotonic()

    def _beat(self) -> None:
        if time.monotonic() - self._beat_at < BEAT_SECONDS:
            return
        self._beat_at = time.monotonic()
        with event_tables(self.db) as conn:
            conn.execute(
                "UPDATE ensemble_dispatcher SET beat = ? WHERE id = 1 AND pid = ?",
                (time.time(), os.getpid()),
            )

    def _leave_post(self) -> None:
        with contextlib.suppress(Exception), event_tables(self.db) as conn:
            conn.execute("DELETE FROM ensemble_dispatcher WHERE id = 1 AND pid = ?", (os.getpid(),))

    # --- PostgreSQL: the runs ride the queue ---------------------------------------------

    async def _run_postgres(self, stop: asyncio.Event) -> None:
        """Dispatch; after a lost connection (a restarted server) connect again and go on.

        A database that cannot be reached or is not upgraded at the start is an error: the
        operator must know at once. Later, nothing is lost by reconnecting: every step is a
        transaction, and a step cut short is done again.
        """
        import psycopg

        from ensemble.cluster.lease import describe

        connected = False
        while not stop.is_set():
            try:
                async for _ in self._postgres_session(stop):
                    connected = True
                return
            except (psycopg.OperationalError, DatabaseError) as error:
                if not connected:
                    raise
                self.say(
                    f"dispatcher: lost the database ({describe(error)}); "
                    f"connecting again in {RETRY_SECONDS:g} s"
                )
                await self._sleep(stop, RETRY_SECONDS)

    async def _postgres_session(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """One pair of connections, dispatching until `stop`; yields once they are ready."""
        import psycopg

        from ensemble.db.schema import require_current_async

        dsn = self.db.dsn or ""
        async with (
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen,
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        ):
            await require_current_async(conn, self.db)
            await listen.execute(f"LISTEN {CHANNEL}")
            yield
            waker = asyncio.create_task(self._listen(listen))
            try:
                while not stop.is_set():
                    routed = await asyncio.to_thread(self.housekeeping)
                    await self._queue_due(conn)
                    await self._settle_postgres(conn)
                    if routed < BATCH:  # a full batch: more are waiting, go on at once
                        await self._sleep(stop, max(self.poll, 0.5))
            finally:
                waker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waker

    async def _listen(self, listen: Any) -> None:
        while True:
            async for _ in listen.notifies(timeout=5.0, stop_after=1):
                self._wake.set()

    async def _queue_due(self, conn: Any) -> None:
        """Mark due deliveries started and queue their runs, in one transaction per batch."""
        from ensemble.cluster import runs

        batch = 50
        while True:
            async with conn.transaction():
                # Dispatchers take turns here, so two never count a cap's seats at once.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('ensemble.dispatch'))")
                now = time.time()
                rows = await (await conn.execute(_pg(DUE_SQL), (now, batch))).fetchall()
                if not rows:
                    return
                busy = dict(await (await conn.execute(BUSY_SQL)).fetchall())
                chosen = choose(rows, busy, self.caps, batch)
                for due in chosen:
                    await conn.execute(_pg(START_SQL), (now, now, due.event_id, due.subscription))
                    await runs.queue_request(
                        conn, due.thread_id, due.scenario, due.request, due.priority
                    )
            for due in chosen:
                again = "" if due.attempts == 1 else f" (attempt {due.attempts})"
                self.say(
                    f"dispatcher: {due.subscription} <- {due.event_id}: queued {due.scenario} "
                    f"thread {due.thread_id}{again}"
                )
            if len(rows) < batch or not chosen:
                return

    async def _settle_postgres(self, conn: Any) -> None:
        """Record the deliveries whose queued run ended (the run's row says how)."""
        outcomes = {"done": "done", "waiting": "waiting", "failed": "failed"}
        async with conn.transaction():
            cursor = await conn.execute(
                "SELECT d.event_id, d.subscription, d.scenario, d.thread_id, d.attempts, "
                "d.max_attempts, d.backoff, r.status, r.error FROM ensemble_deliveries d "
                "JOIN ensemble_runs r ON r.thread_id = d.thread_id "
                "WHERE d.status = 'started' AND r.status IN ('done', 'waiting', 'failed') "
                "FOR UPDATE OF d SKIP LOCKED"
            )
            settled = []
            for row in await cursor.fetchall():
                due = Due(
                    row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), float(row[6]), {}
                )
                step = next_step(
                    due.attempts, due.max_attempts, due.backoff, outcomes[row[7]], row[8]
                )
                await conn.execute(
                    _pg(SETTLE_SQL),
                    (*step, time.time(), due.event_id, due.subscription),
                )
                settled.append((due, step))
        for due, step in settled:
            self._say_outcome(due, *step)


def _alive(row: Any, now: float) -> bool:
    """Whether the dispatcher in the post row still runs (same host: its process exists)."""
    host, pid, beat = row
    if now - float(beat) > LEASE_SECONDS:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
