-- Migration 2: revisions that never repeat, and idempotency keys.
-- generation identifies one incarnation of a thread (0 for threads stored before this migration);
-- applied holds the recent idempotency keys (msgpack list of [key, version]).
ALTER TABLE agents_persist_threads ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents_persist_threads ADD COLUMN applied BLOB;
