-- What `ensemble threads` shows of each thread, with the checkpoint, writes and release it was
-- computed from (ensemble/thread_summaries.py holds the same table for SQLite). A cache: it
-- may be emptied at any time.
CREATE TABLE IF NOT EXISTS ensemble_thread_summaries (
    thread_id TEXT PRIMARY KEY,
    checkpoint_id TEXT NOT NULL,
    writes_key TEXT NOT NULL,
    release TEXT NOT NULL,
    scenario TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    input_field TEXT NOT NULL,
    input TEXT NOT NULL,
    updated TEXT
);
