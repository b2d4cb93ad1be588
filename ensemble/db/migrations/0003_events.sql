-- Events and their deliveries (ensemble/events/store.py holds the same tables for SQLite).
CREATE TABLE IF NOT EXISTS ensemble_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL,
    routed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ensemble_events_unrouted ON ensemble_events (routed, published_at);

CREATE TABLE IF NOT EXISTS ensemble_deliveries (
    event_id TEXT NOT NULL,
    subscription TEXT NOT NULL,
    status TEXT NOT NULL,
    scenario TEXT NOT NULL,
    thread_id TEXT,
    dedupe_key TEXT,
    duplicate_of TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    backoff DOUBLE PRECISION NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    request TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (event_id, subscription)
);
CREATE UNIQUE INDEX IF NOT EXISTS ensemble_deliveries_dedupe
    ON ensemble_deliveries (subscription, dedupe_key);
CREATE INDEX IF NOT EXISTS ensemble_deliveries_due ON ensemble_deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS ensemble_deliveries_thread ON ensemble_deliveries (thread_id);

CREATE TABLE IF NOT EXISTS ensemble_watched (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime DOUBLE PRECISION NOT NULL
);

-- Schedules that publish events (ensemble/events/schedules.py), fired by the workers' leader.
CREATE TABLE IF NOT EXISTS ensemble_event_schedules (
    id BIGSERIAL PRIMARY KEY,
    cron TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    fired INTEGER NOT NULL DEFAULT 0,
    last_fired_at DOUBLE PRECISION,
    last_event TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
