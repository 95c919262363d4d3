-- agents_persist SQLite schema, migration 1 (PRAGMA user_version counts the migrations applied).
-- One row per thread (its head) and one row per encoded message, keyed by (thread_id, seq).
CREATE TABLE IF NOT EXISTS agents_persist_threads (
    thread_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    digest BLOB NOT NULL,
    head BLOB NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL
);

CREATE INDEX IF NOT EXISTS agents_persist_threads_updated
    ON agents_persist_threads (updated_at DESC, thread_id DESC);

CREATE INDEX IF NOT EXISTS agents_persist_threads_expires
    ON agents_persist_threads (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS agents_persist_messages (
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (thread_id, seq)
) WITHOUT ROWID;
