-- Migration 4: mirror the threads stored before migration 3 (their mirror columns
-- are NULL). Not a script: agents_persist.backends.postgres.backfill runs these
-- named queries in batches of threads, each batch one short transaction, walking
-- the heads in thread-ID order; a process killed midway leaves finished batches
-- done and the next setup() walks again, skipping what is mirrored. The version
-- is recorded once the walk finishes. Names in braces are identifiers filled in,
-- quoted, by psycopg2.sql.Identifier.

-- name: batch
-- The next threads after %(after)s that have an unmirrored head or log row, locked
-- against saves for this batch's transaction.
SELECT t.thread_id, t.metadata IS NULL
  FROM {threads} AS t
 WHERE t.thread_id > %(after)s COLLATE "C"
   AND (t.metadata IS NULL
        OR EXISTS (SELECT FROM {log} AS m WHERE m.thread_id = t.thread_id AND m.doc IS NULL))
 ORDER BY t.thread_id COLLATE "C"
 LIMIT %(limit)s
   FOR UPDATE OF t

-- name: heads
SELECT t.thread_id, t.head FROM {threads} AS t WHERE t.thread_id = ANY (%(ids)s) AND t.metadata IS NULL

-- name: rows
SELECT m.thread_id, m.seq, m.n, m.data FROM {log} AS m WHERE m.thread_id = ANY (%(ids)s) AND m.doc IS NULL

-- name: set_heads
UPDATE {threads} AS t
   SET todos = u.todos, current_interrupt = u.interrupt, metadata = u.metadata
  FROM unnest(%(ids)s::text[], %(todos)s::jsonb[], %(interrupts)s::jsonb[], %(metadata)s::jsonb[])
       AS u(thread_id, todos, interrupt, metadata)
 WHERE t.thread_id = u.thread_id

-- name: set_rows
UPDATE {log} AS m
   SET doc = u.doc
  FROM unnest(%(ids)s::text[], %(seqs)s::integer[], %(docs)s::json[]) AS u(thread_id, seq, doc)
 WHERE m.thread_id = u.thread_id AND m.seq = u.seq
