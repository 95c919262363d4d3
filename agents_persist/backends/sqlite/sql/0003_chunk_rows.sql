-- Migration 3: the log keeps messages packed into chunk rows.
-- A log row now holds n consecutive messages (seq is the position of the first), their
-- encoded blobs concatenated as written; rows stored before this migration hold one
-- message each (n = 1), which is exactly that layout, so no row is rewritten here.
-- tail_seq / tail_rows describe the small rows at the end of the log that a later save
-- merges into one bigger row; old threads count every row as tail, so their first save
-- after the upgrade packs them. The whole migration runs in one transaction.
ALTER TABLE agents_persist_messages ADD COLUMN n INTEGER NOT NULL DEFAULT 1;
ALTER TABLE agents_persist_threads ADD COLUMN tail_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents_persist_threads ADD COLUMN tail_rows INTEGER NOT NULL DEFAULT 0;
UPDATE agents_persist_threads SET tail_rows = message_count;
