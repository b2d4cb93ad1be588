-- Ensemble's own tables beside LangGraph's checkpoints: the SQLite schemas of
-- ensemble.audit.trail, ensemble.resilience.cache, ensemble.publishing.journal and
-- ensemble.publishing.approvals, in PostgreSQL's types.
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'ok',
    detail TEXT NOT NULL DEFAULT '{}',
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_thread_at ON audit (thread_id, at);

CREATE TABLE IF NOT EXISTS model_cache (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS publish_journal (
    thread_id TEXT NOT NULL,
    draft_key TEXT NOT NULL,
    out_dir TEXT NOT NULL,
    slug TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('started', 'done')),
    files TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (thread_id, draft_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS publish_journal_out_dir_slug ON publish_journal (out_dir, slug);

CREATE TABLE IF NOT EXISTS ensemble_keys (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
