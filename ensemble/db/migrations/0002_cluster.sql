-- The cluster: one row per queued thread (its request, status and lease epoch), the leader's
-- epoch, the schedules the leader fires, and the fence that refuses a stale worker's writes.
CREATE TABLE IF NOT EXISTS ensemble_runs (
    thread_id TEXT PRIMARY KEY,
    scenario TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'done', 'failed')),
    request JSONB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    epoch BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    submitted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS ensemble_runs_status ON ensemble_runs (status, submitted_at);

CREATE TABLE IF NOT EXISTS ensemble_leader (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    worker TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    since TIMESTAMPTZ
);
INSERT INTO ensemble_leader (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS ensemble_schedules (
    id BIGSERIAL PRIMARY KEY,
    cron TEXT NOT NULL,
    scenario TEXT NOT NULL,
    request JSONB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    next_at TIMESTAMPTZ NOT NULL,
    last_fired_at TIMESTAMPTZ,
    last_thread TEXT,
    fired INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A worker's run connection says which thread and epoch it holds (`ensemble.lease_thread`,
-- `ensemble.lease_epoch`, set for the session). Every checkpoint row it writes is checked, in the
-- same statement, against the thread's current epoch: after a takeover the old holder's writes
-- fail instead of forking the thread. Connections that hold no lease (the CLI, the server) pass.
CREATE OR REPLACE FUNCTION ensemble_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held_thread TEXT := current_setting('ensemble.lease_thread', true);
    held_epoch TEXT := current_setting('ensemble.lease_epoch', true);
    current_epoch BIGINT;
BEGIN
    IF held_thread IS NULL OR held_thread = '' THEN
        RETURN NEW;
    END IF;
    IF held_thread <> NEW.thread_id THEN
        RAISE EXCEPTION 'ensemble lease: a worker holding thread % wrote to thread %',
            held_thread, NEW.thread_id USING ERRCODE = 'EN001';
    END IF;
    SELECT epoch INTO current_epoch FROM ensemble_runs WHERE thread_id = NEW.thread_id FOR SHARE;
    IF current_epoch IS DISTINCT FROM held_epoch::BIGINT THEN
        RAISE EXCEPTION 'ensemble lease lost: thread % is at epoch %, this worker holds epoch %',
            NEW.thread_id, current_epoch, held_epoch USING ERRCODE = 'EN001';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS ensemble_fence ON checkpoints;
CREATE TRIGGER ensemble_fence BEFORE INSERT OR UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION ensemble_fence();
DROP TRIGGER IF EXISTS ensemble_fence ON checkpoint_writes;
CREATE TRIGGER ensemble_fence BEFORE INSERT OR UPDATE ON checkpoint_writes
    FOR EACH ROW EXECUTE FUNCTION ensemble_fence();
DROP TRIGGER IF EXISTS ensemble_fence ON checkpoint_blobs;
CREATE TRIGGER ensemble_fence BEFORE INSERT OR UPDATE ON checkpoint_blobs
    FOR EACH ROW EXECUTE FUNCTION ensemble_fence();
