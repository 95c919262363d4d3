-- Migration 3: the SQL interface. Every conversation becomes readable with plain
-- SQL through two views, <table>_threads and <table>_messages, while the library
-- keeps loading the encoded bytes (bytea, one binary COPY) it always did.
-- Names in braces are identifiers filled in, quoted, by psycopg2.sql.Identifier;
-- the whole file runs as one script inside the migration transaction.
--
-- Physical layout (chosen by measurement, see benchmarks/bench_postgres_layout.py
-- and docs/backends/postgres.rst): the encoded log stays bytea; each log row gets
-- a mirror of its messages as one json array written by the same save function
-- in the same transaction, and the head row gets todos, current_interrupt and
-- metadata as jsonb. Rows stored before this migration have NULL mirrors until
-- migration 4 (a batched backfill run by the library) fills them in.

-- The message log keeps its rows under a new name; <table>_messages becomes the view.
ALTER TABLE {messages} RENAME TO {log_name};

ALTER TABLE {log} ADD COLUMN doc json;

DO $do$
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        EXECUTE 'ALTER TABLE {log} ALTER COLUMN doc SET COMPRESSION lz4';
    END IF;
END
$do$;

COMMENT ON TABLE {log} IS
    'agents_persist message log: row (thread_id, seq) holds n encoded messages starting at position seq, '
    'concatenated in data; doc mirrors them as a json array (NULL: not mirrored yet); tier counts merges';

ALTER TABLE {threads}
    ADD COLUMN todos jsonb,
    ADD COLUMN current_interrupt jsonb,
    ADD COLUMN metadata jsonb,
    ADD COLUMN created_at double precision;

COMMENT ON COLUMN {threads}.metadata IS
    'agents_persist: the snapshot metadata as jsonb (NULL: not mirrored yet); todos and current_interrupt likewise';

-- The save of migration 2 plus the mirror: p_docs[i] is the json array of the
-- messages of log row i, p_todos/p_interrupt/p_metadata the head's parts. A NULL
-- p_metadata means "not mirrored" (saves of older releases); a merged log row is
-- mirrored only if every row it merges is.
CREATE FUNCTION {save3_fn}(
    p_thread_id text, p_expected bigint, p_expected_generation bigint,
    p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[], p_docs json[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_todos jsonb, p_interrupt jsonb, p_metadata jsonb,
    p_now double precision, p_expires_at double precision,
    p_new_generation bigint, p_keep_head boolean, p_key bytea, p_max_keys integer,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint, OUT o_generation bigint)
LANGUAGE plpgsql AS $body$
DECLARE
    empty_digest CONSTANT bytea := decode(repeat('00', 16), 'hex');
    sealed CONSTANT smallint := 32767;
    cur_version bigint;
    cur_count integer;
    cur_digest bytea;
    cur_expires double precision;
    cur_tail integer;
    cur_generation bigint;
    cur_keys bytea[];
    cur_versions bigint[];
    live boolean;
    key_at integer;
    kept integer;
    cur_tier integer := 0;
    run_rows integer;
    run_bytes bigint;
    run_start integer;
    merged_n integer;
    merged bytea;
    merged_doc json;
BEGIN
    LOOP
        SELECT t.version, t.message_count, t.digest, t.expires_at, t.tail_rows,
               t.generation, t.applied_keys, t.applied_versions
          INTO cur_version, cur_count, cur_digest, cur_expires, cur_tail, cur_generation, cur_keys, cur_versions
          FROM {threads} AS t WHERE t.thread_id = p_thread_id FOR UPDATE;
        EXIT WHEN FOUND;
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            o_status := 1; o_version := 0; o_generation := 0; RETURN;
        END IF;
        IF p_append_from IS NOT NULL AND (p_append_from <> 0 OR p_base_digest <> empty_digest) THEN
            o_status := 2; o_version := 0; o_generation := 0; RETURN;
        END IF;
        INSERT INTO {threads} (thread_id, version, message_count, digest, head, updated_at, expires_at,
                               generation, applied_keys, applied_versions,
                               todos, current_interrupt, metadata, created_at)
            VALUES (p_thread_id, 1, p_message_count, p_digest, p_head, p_now, p_expires_at, p_new_generation,
                    CASE WHEN p_key IS NULL THEN '{{}}'::bytea[] ELSE ARRAY[p_key] END,
                    CASE WHEN p_key IS NULL THEN '{{}}'::bigint[] ELSE ARRAY[1::bigint] END,
                    p_todos, p_interrupt, p_metadata, p_now)
            ON CONFLICT (thread_id) DO NOTHING;
        IF FOUND THEN
            DELETE FROM {log} AS m WHERE m.thread_id = p_thread_id;
            INSERT INTO {log} (thread_id, seq, n, tier, data, doc)
                SELECT p_thread_id, u.seq, u.n, sealed, u.data, u.doc
                  FROM unnest(p_seqs, p_counts, p_chunks, p_docs) AS u(seq, n, data, doc);
            o_status := 0; o_version := 1; o_generation := p_new_generation; RETURN;
        END IF;
    END LOOP;
    live := cur_expires IS NULL OR cur_expires > p_now;
    IF NOT live THEN
        cur_version := 0; cur_count := 0; cur_digest := empty_digest;
        cur_generation := p_new_generation; cur_keys := '{{}}'; cur_versions := '{{}}';
    END IF;
    IF p_key IS NOT NULL THEN
        key_at := array_position(cur_keys, p_key);
        IF key_at IS NOT NULL THEN
            o_status := 3; o_version := cur_versions[key_at]; o_generation := cur_generation; RETURN;
        END IF;
    END IF;
    IF p_expected IS NOT NULL AND (p_expected <> cur_version OR (
           p_expected > 0 AND p_expected_generation IS NOT NULL AND p_expected_generation <> cur_generation)) THEN
        o_status := 1; o_version := cur_version; o_generation := cur_generation; RETURN;
    END IF;
    IF p_append_from IS NOT NULL AND (p_append_from <> cur_count OR p_base_digest <> cur_digest) THEN
        o_status := 2; o_version := cur_version; o_generation := cur_generation; RETURN;
    END IF;
    IF p_append_from IS NULL OR NOT live THEN
        DELETE FROM {log} AS m WHERE m.thread_id = p_thread_id;
        INSERT INTO {log} (thread_id, seq, n, tier, data, doc)
            SELECT p_thread_id, u.seq, u.n, sealed, u.data, u.doc
              FROM unnest(p_seqs, p_counts, p_chunks, p_docs) AS u(seq, n, data, doc);
        cur_tail := 0;
    ELSIF cardinality(p_seqs) > 0 THEN
        INSERT INTO {log} (thread_id, seq, n, tier, data, doc)
            SELECT p_thread_id, u.seq, u.n, 0, u.data, u.doc
              FROM unnest(p_seqs, p_counts, p_chunks, p_docs) AS u(seq, n, data, doc);
        cur_tail := cur_tail + cardinality(p_seqs);
    END IF;
    IF p_merge_rows > 1 AND cur_tail >= p_merge_rows THEN
        cur_tail := 0;
        WHILE cur_tier < sealed - 1 LOOP
            SELECT count(*) FILTER (WHERE s.tier = cur_tier), sum(octet_length(s.data)), min(s.seq)
              INTO run_rows, run_bytes, run_start
              FROM (SELECT m.seq, m.tier, m.data FROM {log} AS m
                     WHERE m.thread_id = p_thread_id ORDER BY m.seq DESC LIMIT p_merge_rows) AS s;
            EXIT WHEN run_rows < p_merge_rows;
            IF run_bytes > p_chunk_bytes THEN
                UPDATE {log} AS m SET tier = sealed WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
                EXIT;
            END IF;
            -- The json arrays are msgspec's compact output: '[' || elements || ']', never empty.
            SELECT sum(m.n), string_agg(m.data, ''::bytea ORDER BY m.seq),
                   CASE WHEN count(m.doc) = count(*) THEN
                       ('[' || string_agg(substr(m.doc::text, 2, length(m.doc::text) - 2), ',' ORDER BY m.seq) || ']')::json
                   END
              INTO merged_n, merged, merged_doc
              FROM {log} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
            DELETE FROM {log} AS m WHERE m.thread_id = p_thread_id AND m.seq >= run_start;
            cur_tier := cur_tier + 1;
            INSERT INTO {log} (thread_id, seq, n, tier, data, doc)
                VALUES (p_thread_id, run_start, merged_n, cur_tier, merged, merged_doc);
        END LOOP;
    END IF;
    IF p_key IS NOT NULL THEN
        cur_keys := array_append(cur_keys, p_key);
        cur_versions := array_append(cur_versions, cur_version + 1);
        kept := cardinality(cur_keys);
        IF kept > p_max_keys THEN
            cur_keys := cur_keys[kept - p_max_keys + 1 : kept];
            cur_versions := cur_versions[kept - p_max_keys + 1 : kept];
        END IF;
    END IF;
    UPDATE {threads} AS t
       SET version = cur_version + 1, message_count = p_message_count, digest = p_digest,
           head = CASE WHEN p_keep_head AND live THEN t.head ELSE p_head END,
           todos = CASE WHEN p_keep_head AND live THEN t.todos ELSE p_todos END,
           current_interrupt = CASE WHEN p_keep_head AND live THEN t.current_interrupt ELSE p_interrupt END,
           metadata = CASE WHEN p_keep_head AND live THEN t.metadata ELSE p_metadata END,
           created_at = CASE WHEN live THEN t.created_at ELSE p_now END,
           updated_at = p_now, expires_at = p_expires_at, tail_rows = cur_tail,
           generation = cur_generation, applied_keys = cur_keys, applied_versions = cur_versions
     WHERE t.thread_id = p_thread_id;
    o_status := 0; o_version := cur_version + 1; o_generation := cur_generation;
END
$body$;

-- Processes of the previous release call the save function of migration 2 (and
-- older ones that of migration 1, which calls it): it now runs the one above
-- without a mirror, so their saves stay correct and show as not mirrored (NULL).
CREATE OR REPLACE FUNCTION {save2_fn}(
    p_thread_id text, p_expected bigint, p_expected_generation bigint,
    p_append_from integer, p_base_digest bytea,
    p_seqs integer[], p_counts integer[], p_chunks bytea[],
    p_message_count integer, p_digest bytea, p_head bytea,
    p_now double precision, p_expires_at double precision,
    p_new_generation bigint, p_keep_head boolean, p_key bytea, p_max_keys integer,
    p_merge_rows integer, p_chunk_bytes integer,
    OUT o_status integer, OUT o_version bigint, OUT o_generation bigint)
LANGUAGE sql AS $body$
    SELECT s.o_status, s.o_version, s.o_generation
      FROM {save3_fn}(p_thread_id, p_expected, p_expected_generation, p_append_from, p_base_digest,
                      p_seqs, p_counts, p_chunks, array_fill(NULL::json, ARRAY[cardinality(p_seqs)]),
                      p_message_count, p_digest, p_head, NULL, NULL, NULL, p_now, p_expires_at,
                      p_new_generation, false, p_key, p_max_keys, p_merge_rows, p_chunk_bytes) AS s
$body$;

-- The loads and deletes of migrations 1 and 2 read the log under its new name
-- (same signatures and results, for processes of earlier releases too).
CREATE OR REPLACE FUNCTION {load2_fn}(p_thread_id text, p_now double precision)
RETURNS TABLE (o_version bigint, o_message_count integer, o_digest bytea, o_head bytea,
               o_updated_at double precision, o_expires_at double precision,
               o_generation bigint, o_applied_keys bytea[], o_applied_versions bigint[], o_data bytea)
LANGUAGE plpgsql STABLE AS $body$
BEGIN
    RETURN QUERY
        SELECT t.version, t.message_count, t.digest, t.head, t.updated_at, t.expires_at,
               t.generation, t.applied_keys, t.applied_versions, NULL::bytea
          FROM {threads} AS t
         WHERE t.thread_id = p_thread_id AND (t.expires_at IS NULL OR t.expires_at > p_now);
    IF FOUND THEN
        RETURN QUERY
            SELECT NULL::bigint, NULL::integer, NULL::bytea, NULL::bytea, NULL::double precision,
                   NULL::double precision, NULL::bigint, NULL::bytea[], NULL::bigint[], m.data
              FROM {log} AS m WHERE m.thread_id = p_thread_id ORDER BY m.seq;
    END IF;
END
$body$;

CREATE OR REPLACE FUNCTION {load_fn}(p_thread_id text, p_now double precision)
RETURNS TABLE (o_version bigint, o_message_count integer, o_digest bytea, o_head bytea,
               o_updated_at double precision, o_expires_at double precision, o_data bytea)
LANGUAGE sql STABLE AS $body$
    SELECT l.o_version, l.o_message_count, l.o_digest, l.o_head, l.o_updated_at, l.o_expires_at, l.o_data
      FROM {load2_fn}(p_thread_id, p_now) AS l
$body$;

CREATE OR REPLACE FUNCTION {delete_fn}(p_thread_id text, p_now double precision) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    old_expires double precision;
BEGIN
    DELETE FROM {threads} AS t WHERE t.thread_id = p_thread_id RETURNING t.expires_at INTO old_expires;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM {log} AS m WHERE m.thread_id = p_thread_id;
    RETURN old_expires IS NULL OR old_expires > p_now;
END
$body$;

-- Retention: one batch of at most p_limit threads whose head matches, deleted
-- with their log rows in the caller's (short) transaction. Heads a save holds
-- locked are skipped (SKIP LOCKED), so a purge never waits for a saver, and a
-- saver waits for at most one batch. p_before NULL: expired threads
-- (expires_at <= p_now); else threads last saved before p_before.
CREATE FUNCTION {purge_batch_fn}(p_now double precision, p_before double precision, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $body$
DECLARE
    doomed text[];
BEGIN
    IF p_before IS NULL THEN
        WITH gone AS (
            DELETE FROM {threads} AS t
             WHERE t.thread_id IN (
                   SELECT x.thread_id FROM {threads} AS x
                    WHERE x.expires_at <= p_now
                    ORDER BY x.expires_at LIMIT p_limit
                      FOR UPDATE SKIP LOCKED)
               AND t.expires_at <= p_now
            RETURNING t.thread_id)
        SELECT array_agg(gone.thread_id) INTO doomed FROM gone;
    ELSE
        WITH gone AS (
            DELETE FROM {threads} AS t
             WHERE t.thread_id IN (
                   SELECT x.thread_id FROM {threads} AS x
                    WHERE x.updated_at < p_before
                    ORDER BY x.updated_at LIMIT p_limit
                      FOR UPDATE SKIP LOCKED)
               AND t.updated_at < p_before
            RETURNING t.thread_id)
        SELECT array_agg(gone.thread_id) INTO doomed FROM gone;
    END IF;
    IF doomed IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM {log} AS m WHERE m.thread_id = ANY (doomed);
    RETURN cardinality(doomed);
END
$body$;

CREATE OR REPLACE FUNCTION {purge_fn}(p_now double precision, p_limit integer) RETURNS integer
LANGUAGE sql AS $body$
    SELECT {purge_batch_fn}(p_now, NULL, p_limit)
$body$;

-- Full-text search: the words of every string in a log row's mirror. IMMUTABLE
-- (to_tsvector with a fixed configuration), so it can back an expression index:
--   CREATE INDEX ... ON <table>_log USING gin (<table>_search(doc));
CREATE FUNCTION {search_fn}(p_doc json) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $body$
    SELECT to_tsvector('simple'::regconfig, p_doc)
$body$;

-- ------------------------------------------------------------------ the interface
-- Stable: later releases keep these names, columns and meanings (columns may be added).

CREATE VIEW {threads_view} AS
SELECT t.thread_id,
       t.version,
       t.message_count,
       t.todos,
       t.current_interrupt,
       t.metadata,
       to_timestamp(t.created_at) AS created_at,
       to_timestamp(t.updated_at) AS updated_at,
       to_timestamp(t.expires_at) AS expires_at,
       (SELECT coalesce(sum(pg_column_size(m.data) + coalesce(pg_column_size(m.doc), 0)), 0)
          FROM {log} AS m WHERE m.thread_id = t.thread_id)::bigint
           + pg_column_size(t.*) AS stored_bytes
  FROM {threads} AS t;

CREATE VIEW {messages} AS
SELECT m.thread_id,
       (m.seq + e.ord - 1)::integer AS seq,
       e.message ->> 'role' AS role,
       CASE WHEN e.message -> 'content' IS NULL THEN ''
            WHEN json_typeof(e.message -> 'content') = 'string' THEN e.message ->> 'content' END AS content,
       CASE WHEN json_typeof(e.message -> 'content') NOT IN ('string', 'null')
            THEN (e.message -> 'content')::jsonb END AS content_json,
       coalesce((e.message -> 'tool_calls')::jsonb, '[]'::jsonb) AS tool_calls,
       e.message ->> 'tool_call_id' AS tool_call_id,
       e.message ->> 'name' AS name,
       coalesce((e.message -> 'metadata')::jsonb, '{{}}'::jsonb) AS metadata,
       {search_fn}(m.doc) AS chunk_search
  FROM {log} AS m
 CROSS JOIN LATERAL json_array_elements(m.doc) WITH ORDINALITY AS e(message, ord);

COMMENT ON VIEW {threads_view} IS
    'agents_persist SQL interface: one row per stored thread (expired ones until purged); see docs/backends/postgres.rst';

COMMENT ON VIEW {messages} IS
    'agents_persist SQL interface: one row per message, (thread_id, seq) from 0 in order; see docs/backends/postgres.rst';
