"""Beyond one machine: a shared run queue on PostgreSQL, workers that take over, one leader.

- `runs`: the `ensemble_runs` table (what each queued thread asked for, its status, its lease
  epoch) and submitting to the queue (pgqueuer) in the same transaction.
- `lease`: the fenced connection a worker runs a thread on; after a takeover its writes fail.
- `execute`: what a worker does with one claimed thread (start, resume, fork or continue).
- `leader`: one leader at a time (advisory lock + session timeout + epoch), and its duties.
- `schedules`: cron schedules the leader fires.
- `worker`: `ensemble worker`, pgqueuer's QueueManager with Ensemble's handlers.
"""

DEFAULT_CONCURRENCY = 2
"""Runs at once in one worker process."""
DEFAULT_STALL_TIMEOUT = 30.0
"""Seconds without a heartbeat (the database's clock) before a run is handed to another worker."""
DEFAULT_LEADER_LEASE = 10.0
"""Seconds a silent leader keeps its post before the server cuts its session."""
