-- The statements the PostgreSQL store sends, one per "-- name: <name>" section.
-- Identifiers in braces are filled in, quoted, by psycopg2.sql.Identifier once per
-- store; %s and %(name)s are psycopg2 parameters. Comment lines are not sent.

-- name: save
SELECT o_status, o_version, o_generation
    FROM {save4_fn}(%s, %s, %s, %s, %s, %s, %s, %s, %s::json[], %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb,
                    %s, %s, %s, %s, %s, %s, %s, %s)

-- name: load
COPY (SELECT * FROM {load2_fn}(%s, %s)) TO STDOUT (FORMAT binary)

-- name: load_range
-- A partial read in one statement (one snapshot): the live head's scalars (part 0), then
-- the log rows holding positions lo .. hi - 1, where %(start)s and %(stop)s are Python
-- slice bounds (NULL: none; negative: from the end) resolved against the head's count.
-- The rows start at the one holding lo: an index seek, not a walk of the whole log.
WITH h AS (
    SELECT version, message_count, expires_at FROM {threads}
     WHERE thread_id = %(thread_id)s AND (expires_at IS NULL OR expires_at > %(now)s)
), b AS (
    SELECT CASE WHEN %(start)s::integer IS NULL THEN 0
                WHEN %(start)s::integer < 0 THEN greatest(message_count + %(start)s::integer, 0)
                ELSE least(%(start)s::integer, message_count) END AS lo,
           CASE WHEN %(stop)s::integer IS NULL THEN message_count
                WHEN %(stop)s::integer < 0 THEN greatest(message_count + %(stop)s::integer, 0)
                ELSE least(%(stop)s::integer, message_count) END AS hi
      FROM h
)
SELECT 0 AS part, h.version, h.message_count, h.expires_at, NULL::integer AS seq, NULL::integer AS n, NULL::bytea AS data
  FROM h
UNION ALL
SELECT 1, NULL, NULL, NULL, m.seq, m.n, m.data
  FROM {log} AS m, b
 WHERE m.thread_id = %(thread_id)s AND b.lo < b.hi AND m.seq < b.hi
   AND m.seq >= coalesce((SELECT max(l.seq) FROM {log} AS l WHERE l.thread_id = %(thread_id)s AND l.seq <= b.lo), 0)
ORDER BY 1, 5

-- name: version
SELECT version, expires_at FROM {threads} WHERE thread_id = %s AND (expires_at IS NULL OR expires_at > %s)

-- name: head
SELECT version, message_count, digest, updated_at, expires_at, generation, applied_keys, applied_versions
    FROM {threads} WHERE thread_id = %s AND (expires_at IS NULL OR expires_at > %s)

-- name: delete
SELECT {delete2_fn}(%s, %s)

-- name: purge
-- One batch of at most %(limit)s threads (expired ones if %(before)s is NULL, else those last
-- saved before it), each batch its own short transaction.
SELECT {purge_batch_fn}(%(now)s, %(before)s, %(limit)s)

-- name: list
-- psycopg2 sends parameters as literals, so the planner folds away the unused
-- filters, and LIKE with a literal prefix can use the primary key (C collation).
SELECT thread_id, version, updated_at, message_count, expires_at FROM {threads}
    WHERE (expires_at IS NULL OR expires_at > %(now)s)
      AND (%(pattern)s::text IS NULL OR thread_id LIKE %(pattern)s)
      AND (%(after_at)s::double precision IS NULL OR (updated_at, thread_id) < (%(after_at)s, %(after_id)s))
    ORDER BY updated_at DESC, thread_id DESC LIMIT %(limit)s

-- name: scan
-- Thread-ID order is byte order (the column is COLLATE "C", UTF-8): saves never move a thread in it.
SELECT thread_id, version, updated_at, message_count, expires_at FROM {threads}
    WHERE (expires_at IS NULL OR expires_at > %(now)s)
      AND (%(pattern)s::text IS NULL OR thread_id LIKE %(pattern)s)
      AND (%(after)s::text IS NULL OR thread_id > %(after)s COLLATE "C")
    ORDER BY thread_id COLLATE "C" LIMIT %(limit)s

-- name: applied
-- Outside any transaction: fails with UndefinedTable before the first migration.
SELECT max(version) FROM {migrations}

-- The migration transaction, under pg_advisory_xact_lock(key of schema and table):

-- name: advisory_lock
SELECT pg_advisory_xact_lock(%s)

-- name: schema_exists
SELECT 1 FROM pg_namespace WHERE nspname = %s

-- name: create_schema
CREATE SCHEMA {schema}

-- name: migrations_table
CREATE TABLE IF NOT EXISTS {migrations} (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrated_version
SELECT coalesce(max(version), 0) FROM {migrations}

-- name: record_migration
INSERT INTO {migrations} (version, description) VALUES (%s, %s)
